"""Reconciler tests run against the real dev stack (MariaDB, PostgreSQL), never against mocks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cdc.devstack.connections import StackConnections, default_state_dir
from cdc.devstack.settings import StackSettings
from cdc.devstack.stack import DevStack

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def stack() -> StackConnections:
    return DevStack(StackSettings(state_dir=default_state_dir())).up().connections


@pytest.fixture(scope="package")
def secrets() -> Iterator[object]:
    from tests.reconciler.shared_pipeline import Secrets

    yield Secrets()


@pytest.fixture(scope="package")
def shared_pipeline(
    stack: StackConnections, tmp_path_factory: pytest.TempPathFactory, secrets: object
) -> Iterator[object]:
    """tests/reconciler/shared_pipeline.py: made once for the drift and policy tests."""
    from tests.reconciler.recon_pipeline import ReconPipeline
    from tests.reconciler.shared_pipeline import POLICIES, Secrets, fill

    assert isinstance(secrets, Secrets)
    p = ReconPipeline.create(stack, tmp_path_factory.mktemp("shared"), POLICIES)
    try:
        fill(p, secrets)
        yield p
    finally:
        p.close()
