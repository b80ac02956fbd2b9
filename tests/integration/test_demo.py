"""The README's main job: `cdc dev demo` writes a workload to MariaDB and reads it back from the binlog."""

from __future__ import annotations

from click.testing import CliRunner

from cdc.cli import main
from cdc.devstack.connections import StackConnections


def test_demo_shows_changes_from_the_binlog(stack: StackConnections) -> None:
    result = CliRunner().invoke(main, ["dev", "demo"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "c wikidb.actor" in out and "c wikidb.page" in out and "u wikidb.page" in out
    assert "d wikidb.actor" in out
    assert "5 row changes captured" in out
    assert stack.mariadb.password not in out and stack.mariadb.root_password not in out
