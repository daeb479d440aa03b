"""Fixtures for flow tests (their helpers are in tests/kit: shares, flow_runs, waiting)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.kit.bench_kit import gen_tree


@pytest.fixture
def small_reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `small` tree, generated once per test that needs the expected result."""
    ref = tmp_path_factory.mktemp("reference") / "small"
    gen_tree(ref)
    return ref
