"""/healthz and /readyz over real HTTP on loopback, driven by the daemon's phase and loop ticks."""

from __future__ import annotations

import time
import urllib.error
import urllib.request

import pytest

from cdc.config.models import MetricsConfig
from cdc.core.errors import ConfigError
from cdc.daemon.health import serve
from cdc.daemon.metrics import DaemonMetrics, Phase


def _status(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_liveness_and_readiness_follow_the_loop() -> None:
    metrics = DaemonMetrics("embedded", "ops-unit")
    server = serve(MetricsConfig(liveness_seconds=0.5).model_copy(update={"port": 0}), metrics)
    port = server.port
    try:
        assert (_status(port, "/healthz"), _status(port, "/readyz")) == (200, 503)  # starting
        metrics.phase, metrics.tick = Phase.RUNNING, time.monotonic()
        assert (_status(port, "/healthz"), _status(port, "/readyz")) == (200, 200)
        time.sleep(0.7)  # the loop has not turned for longer than liveness_seconds: hung
        assert _status(port, "/healthz") == 503
        metrics.phase = Phase.BACKOFF  # waiting to retry is alive, and not ready
        assert (_status(port, "/healthz"), _status(port, "/readyz")) == (200, 503)
        assert _status(port, "/nothing") == 404
    finally:
        server.close()


def test_a_taken_port_names_the_setting() -> None:
    metrics = DaemonMetrics("sink", "ops-unit")
    first = serve(MetricsConfig().model_copy(update={"port": 0}), metrics)
    try:
        with pytest.raises(ConfigError, match=r"metrics\.port"):
            serve(MetricsConfig().model_copy(update={"port": first.port}), metrics)
    finally:
        first.close()
