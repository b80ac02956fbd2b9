"""The daemon's HTTP endpoint: ``/metrics`` (Prometheus), ``/healthz`` (liveness), ``/readyz`` (readiness).

One small threaded HTTP server on the ``metrics`` section's host and port (loopback by default: it
has no authentication), on daemon threads, so that it never keeps a stopping process alive.

- ``/healthz`` 200 while the daemon's loop turns (it ticked within ``liveness_seconds``) or waits out
  a backoff; 503 when it hangs. A supervisor (systemd watchdog, Kubernetes liveness probe) restarts
  the process then: nothing is lost, the restart resumes from the last checkpoint.
- ``/readyz`` 200 while connected to the source and the stream/sinks and running; 503 while starting,
  backing off after an error, or stopped. Not a reason to restart: the daemon retries by itself.
"""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Protocol

from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from cdc.config.models import MetricsConfig, PipelineConfig
from cdc.core.errors import ConfigError
from cdc.daemon.metrics import DaemonMetrics, SourcePoller, registry_for

if TYPE_CHECKING:
    from cdc.daemon.snapshots import Snapshots

log = logging.getLogger("cdc.metrics")

__all__ = ["MetricsServer", "serve", "serve_daemon"]

SOURCE_LAG_EVERY_S = 15.0  # one short source connection this often for the binlog bytes lag


class Observed(Protocol):
    metrics: DaemonMetrics | None


class MetricsServer:
    def __init__(self, server: ThreadingHTTPServer) -> None:
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def serve(config: MetricsConfig, metrics: DaemonMetrics) -> MetricsServer:
    """Listen on ``config.host:config.port`` (ConfigError naming the setting if it cannot)."""
    registry = registry_for(metrics)
    liveness_s = config.liveness_seconds

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                ok = metrics.live(liveness_s)
                self._send(200 if ok else 503, b"ok\n" if ok else b"the daemon's loop is stuck\n")
            elif path == "/readyz":
                ok = metrics.ready()
                text = "ready\n" if ok else f"not ready: {metrics.phase.value}\n"
                self._send(200 if ok else 503, text.encode())
            else:
                self._send(404, b"/metrics, /healthz or /readyz\n")

        def _send(self, code: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            log.debug("metrics endpoint: " + format, *args)

    try:
        server = ThreadingHTTPServer((config.host, config.port), Handler)
    except OSError as exc:
        raise ConfigError(
            f"metrics: cannot listen on {config.host}:{config.port} ({exc.strerror or exc}): is another "
            "daemon using that port? Give each daemon its own `metrics.port`"
        ) from exc
    server.daemon_threads = True
    endpoint = MetricsServer(server)
    endpoint.start()
    log.info("metrics on http://%s:%d/metrics (health: /healthz, /readyz)", config.host, endpoint.port)
    return endpoint


def serve_daemon(
    config: PipelineConfig, daemon: Observed, kind: str, snapshots: Snapshots | None = None
) -> MetricsServer | None:
    """Give ``daemon`` its metrics and serve them, if the config has a ``metrics`` section.

    ``kind`` is "capture", "embedded" or "sink"; the daemons of `cdc run` also get the binlog bytes
    lag (a short source connection every 15 s). Raises ConfigError if the port cannot be bound.
    """
    if config.metrics is None:
        return None
    metrics = DaemonMetrics(kind, config.name, config.state_dir)
    if snapshots is not None:
        metrics.snapshot_state = lambda: snapshots.pump.state if snapshots.pump is not None else None
    server = serve(config.metrics, metrics)
    daemon.metrics = metrics
    if kind != "sink":
        from cdc.daemon.mariadb_source import connection_settings
        from cdc.sources.mariadb.server_position import bytes_behind

        settings = connection_settings(config.source)
        SourcePoller(
            metrics, lambda file, offset: bytes_behind(settings, file, offset), SOURCE_LAG_EVERY_S
        ).start()
    return server
