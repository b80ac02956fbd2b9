"""Snapshot reader tests run against the real dev-stack MariaDB, as tests/integration does."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cdc.devstack.connections import StackConnections
from cdc.sources.mariadb import ConnectionSettings
from tests.integration.conftest import stack

__all__ = ["stack"]

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # only the tests that reach the dev stack (the ChunkSizer's do not)
    for item in items:
        if _HERE in Path(str(item.fspath)).parents and "stack" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="module")
def settings(stack: StackConnections) -> ConnectionSettings:
    db = stack.mariadb
    return ConnectionSettings(db.host, db.port, db.user, db.password)


@pytest.fixture(scope="module")
def database(stack: StackConnections) -> Iterator[str]:
    """A database of this module's own (snapread_<random>), dropped afterwards."""
    name = f"snapread_{uuid.uuid4().hex[:8]}"
    conn = stack.mariadb.connect_root(autocommit=True, charset="utf8mb4")
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    yield name
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE {name}")
    conn.close()


@pytest.fixture(scope="module")
def sql(stack: StackConnections) -> Iterator[Callable[..., list[tuple[object, ...]]]]:
    """Runs statements as root (autocommit, utf8mb4, UTC); returns the last statement's rows."""
    conn = stack.mariadb.connect_root(
        autocommit=True, charset="utf8mb4", init_command="SET time_zone='+00:00'"
    )

    def run(*statements: str) -> list[tuple[object, ...]]:
        rows: list[tuple[object, ...]] = []
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
                rows = list(cur.fetchall())
        return rows

    yield run
    conn.close()
