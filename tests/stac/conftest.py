"""The STAC fixtures (tests/support/stac_server.py) for the tests in this folder."""

from support.stac_server import (  # noqa: F401 - pytest fixtures
    stac_api,
    stac_scenes,
    stac_server,
    stac_static_catalog,
)
