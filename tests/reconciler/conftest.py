"""Reconciler tests run against the real dev stack (MariaDB, PostgreSQL), never against mocks."""

from __future__ import annotations

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
