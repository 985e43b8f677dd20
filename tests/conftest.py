"""Shared pytest setup: fixture plugins live in tests/support/ (one module per concern)."""

pytest_plugins = ["support.fixture_files", "support.servers", "support.stac_server"]
