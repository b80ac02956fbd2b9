"""The documented deployment files: the systemd units parse, the container example runs `cdc`.

``systemd-analyze verify`` exits 0 even for unknown keys or bad values (it only warns), so any
output at all fails the test.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DEPLOY = Path(__file__).parents[2] / "docs" / "deploy"
CDC = Path(sys.executable).parent / "cdc"


@pytest.mark.parametrize("unit", ["headwater-run@.service", "headwater-sink@.service"])
def test_systemd_unit_verifies(unit: str, tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is not installed: scripts/setup.sh installs it (the systemd package)")
    # an instance of the template, with ExecStart pointing at this checkout's cdc (verify checks it)
    text = (DEPLOY / unit).read_text().replace("/opt/headwater/venv/bin/cdc", str(CDC))
    instance = tmp_path / unit.replace("@.", "@wiki.")
    instance.write_text(text)
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(instance)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0 and not done.stdout.strip() and not done.stderr.strip(), (
        done.stdout + done.stderr
    )


def test_bad_unit_is_caught(tmp_path: Path) -> None:
    """The check above can fail: a key systemd does not know is reported."""
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is not installed: scripts/setup.sh installs it (the systemd package)")
    bad = tmp_path / "bad@wiki.service"
    bad.write_text(f"[Service]\nExecStart={CDC} run\nRestartPreventExitStatuses=2\n")
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(bad)], capture_output=True, text=True, timeout=60
    )
    assert "Unknown key" in done.stdout + done.stderr


def test_container_example_runs_cdc() -> None:
    text = (DEPLOY / "Containerfile").read_text()
    assert 'ENTRYPOINT ["cdc"]' in text
    assert "/healthz" in text
    for package in ("cdc", "snapshotter", "reconciler", "sinks"):
        assert f"COPY {package} ./{package}" in text
