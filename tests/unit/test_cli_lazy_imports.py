"""`cdc` imports a command's code when that command runs: a daemon does not hold the others' imports."""

from __future__ import annotations

import json
import subprocess
import sys

from click.testing import CliRunner

from cdc.cli import _COMMANDS, main

# imported by no daemon path through `cdc.cli` alone (each is some other command's or sink's)
_NOT_AT_START = (
    "cdc.demo",
    "cdc.devstack.commands",
    "cdc.bootstrap_command",
    "cdc.reconcile_pipeline",
    "cdc.daemon.embedded",
    "psycopg",
    "pymysql",
    "sqlalchemy",
    "pyiceberg",
    "pyarrow",
)


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport json, sys; print(json.dumps(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_cli_import_leaves_commands_and_drivers_out() -> None:
    loaded = _modules_after("import cdc.cli")
    assert not [name for name in _NOT_AT_START if name in loaded]


def test_every_lazy_command_loads_and_helps() -> None:
    runner = CliRunner()
    for name in _COMMANDS:
        result = runner.invoke(main, [name, "--help"])
        assert result.exit_code == 0, (name, result.output)
        assert "Usage:" in result.output


def test_help_lists_lazy_and_eager_commands_once() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    listed = [line.split()[0] for line in result.output.split("Commands:")[1].splitlines() if line.strip()]
    assert listed == sorted(set(listed))
    assert set(_COMMANDS) | {"run", "sink", "validate", "history", "maintain"} <= set(listed)


def test_unknown_command_is_still_an_error() -> None:
    result = CliRunner().invoke(main, ["no-such-command"])
    assert result.exit_code == 2
    assert "No such command" in result.output
