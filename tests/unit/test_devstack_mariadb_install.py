"""Several MariaDB data directories initialized at the same moment all initialize.

Tests start private servers in parallel (the failover rigs, the dev stack of another worktree).
`mariadb-install-db` runs the server in bootstrap mode, which keeps temporary Aria tables in its
tmpdir; with the shared /tmp the bootstraps dropped each other's files and one crashed (signal 11
in ha_maria::drop_table) now and then: 5 of 18 installs, six at a time. Each instance's bootstrap
now gets the instance's own tmpdir, as its server already did.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cdc.devstack.mariadb import MariaDb
from cdc.devstack.settings import ServiceName, StackSettings
from tests.support.at_once import at_once


def _install_at_once(base: Path, count: int) -> list[BaseException]:
    only = (ServiceName.MARIADB,)
    services = [MariaDb(StackSettings(state_dir=base / f"s{i}", services=only)) for i in range(count)]
    errors = at_once(services, MariaDb.prepare)
    for service in services:
        assert errors or (service.data_dir / "mysql").is_dir()
    return errors


@pytest.mark.parametrize("round_", range(2))
def test_data_directories_initialized_at_once_all_initialize(tmp_path: Path, round_: int) -> None:
    assert _install_at_once(tmp_path, 6) == []
