"""The `cdc` CLI: help reads well, `validate` reports problems by key path and never shows secrets."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from cdc.cli import main

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "cli-Secret-99"


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), env=env)
    return result.exit_code, result.output + (result.stderr if result.stderr_bytes else "")


def test_help_lists_commands() -> None:
    code, out = run("--help")
    assert code == 0
    for command in ("dev", "validate"):
        assert command in out
    code, out = run("dev", "--help")
    assert code == 0 and all(c in out for c in ("up", "down", "status", "demo"))


def test_validate_example(monkeypatch: object) -> None:
    env = {"CDC_SOURCE_PASSWORD": PASSWORD, "PWD": str(REPO)}
    code, out = run("validate", "-c", str(REPO / "configs" / "embedded.yaml"), env=env)
    assert code == 0, out
    assert "valid" in out and "embedded" in out
    assert PASSWORD not in out


def test_validate_json_masks_secrets() -> None:
    env = {"CDC_SOURCE_PASSWORD": PASSWORD, "CDC_SERVING_PASSWORD": "pg-Serving-77", "PWD": str(REPO)}
    code, out = run("validate", "--json", "-c", str(REPO / "configs" / "kafka.yaml"), env=env)
    assert code == 0, out
    assert PASSWORD not in out and "pg-Serving-77" not in out
    assert '"bootstrap_servers": "127.0.0.1:9092"' in out


def test_validate_bad_config_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: wiki\nsource:\n  user: cdc\n  password: ${CDC_SOURCE_PASSWORD}\n  prot: 1\n  server_id: x\n"
    )
    code, out = run("validate", "-c", str(bad), env={"CDC_SOURCE_PASSWORD": PASSWORD})
    assert code == 2
    assert "source.prot: unknown key 'prot'; did you mean 'port'?" in out
    assert "source.server_id: expected an integer, got 'x'" in out
    assert PASSWORD not in out


def test_validate_unset_env(tmp_path: Path) -> None:
    code, out = run(
        "validate",
        "-c",
        str(REPO / "configs" / "embedded.yaml"),
        env={"CDC_SOURCE_PASSWORD": None},  # type: ignore[dict-item]
    )
    assert code == 2
    assert "source.password: environment variable CDC_SOURCE_PASSWORD is not set" in out
