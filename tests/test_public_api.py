"""The flat public namespace is exactly the documented surface, and the error tree holds."""

from __future__ import annotations

import inspect

import pytest

import rasteret
from rasteret import errors

DOCUMENTED = {
    "Collection",
    "RasteretError",
    "RasteretWarning",
    "__version__",
    "as_collection",
    "build",
    "build_from_stac",
    "build_from_table",
    "errors",
    "load",
}


def test_all_is_the_documented_surface() -> None:
    assert set(rasteret.__all__) == DOCUMENTED
    for name in rasteret.__all__:
        assert hasattr(rasteret, name), name


def test_build_from_table_signature_matches_the_contract() -> None:
    params = inspect.signature(rasteret.build_from_table).parameters
    contract = [
        "path", "name", "data_source", "workspace_dir", "column_map", "href_column",
        "band_index_map", "url_rewrite_patterns", "filesystem", "columns", "filter_expr",
        "enrich_cog", "band_codes", "cloud_config", "max_concurrent", "force", "backend",
        "progress",
    ]  # fmt: skip
    # The contract's parameters, in its order; anything beyond it comes after, keyword-only.
    assert list(params)[: len(contract)] == contract
    extra = list(params)[len(contract) :]
    assert all(params[k].kind is inspect.Parameter.KEYWORD_ONLY for k in extra)
    defaults = {k: p.default for k, p in params.items() if k != "path"}
    assert defaults["max_concurrent"] == 300
    assert defaults["enrich_cog"] is False
    assert defaults["name"] == ""


@pytest.mark.parametrize(
    ("leaf", "builtin"),
    [
        (errors.HeaderError, ValueError),
        (errors.DecodeError, ValueError),
        (errors.UnsupportedFormatError, NotImplementedError),
        (errors.FetchError, OSError),
        (errors.ObjectNotFoundError, FileNotFoundError),
        (errors.AccessDeniedError, PermissionError),
        (errors.SchemaError, ValueError),
        (errors.BandResolutionError, LookupError),
        (errors.EnrichmentError, RuntimeError),
        (errors.WorkspaceError, ValueError),
        (errors.CollectionNotFoundError, FileNotFoundError),
        (errors.CollectionNotFoundError, errors.WorkspaceError),
        (errors.ReadError, RuntimeError),
        (errors.MissingDependencyError, ImportError),
    ],
)
def test_every_error_is_a_rasteret_error_and_its_builtin(leaf: type, builtin: type) -> None:
    assert issubclass(leaf, errors.RasteretError)
    assert issubclass(leaf, builtin)
    assert leaf.__name__ in errors.__doc__


def test_every_exported_error_is_in_the_tree() -> None:
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(
            cls, errors.RasteretWarning if name.endswith("Warning") else errors.RasteretError
        )
        assert name in errors.__doc__


def test_the_warning_lives_with_the_errors() -> None:
    import rasteret.builders

    assert issubclass(errors.RasteretWarning, UserWarning)
    assert rasteret.RasteretWarning is errors.RasteretWarning
    assert rasteret.builders.RasteretWarning is errors.RasteretWarning  # the old import path
