"""Fixtures of the end-to-end tests: the four runs whose pages two test modules read."""

from __future__ import annotations

import pytest

from .pages import Run, make_runs


@pytest.fixture(scope="session")
def page_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    """Clean, with failures, stopped, interrupted and resumed: made once, read by both."""
    return make_runs(tmp_path_factory.mktemp("pages"))
