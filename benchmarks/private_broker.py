"""A private Kafka broker, started by the dev stack's own code in its own state directory and ports, with
extra server properties or JVM flags: to A/B broker settings (``benchmarks.e2e --kafka-state DIR``)
without touching the shared broker.

    python -m benchmarks.private_broker up /tmp/brokerB --port 19192 --prop metadata.max.idle.interval.ms=5000
    python -m benchmarks.private_broker down /tmp/brokerB --port 19192
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cdc.devstack.kafka import Kafka
from cdc.devstack.settings import ServiceName, StackSettings


class PrivateKafka(Kafka):
    """The dev stack's broker with ``props`` added to its server.properties and ``jvm`` to its command."""

    def __init__(
        self,
        settings: StackSettings,
        props: dict[str, str],
        jvm: list[str],
        drop: tuple[str, ...] = (),
        request_log: bool = False,
    ) -> None:
        super().__init__(settings)
        self._props, self._jvm, self._drop = props, jvm, drop
        self._request_log = request_log

    def prepare(self) -> None:
        super().prepare()
        if self._props:
            extra = "".join(f"{key}={value}\n" for key, value in self._props.items())
            self.server_properties.write_text(self.server_properties.read_text() + extra)
        if self._request_log:
            # every request's "Completed request" line with its times (queue, local, remote, send)
            text = self.log4j_file.read_text().replace(
                "logger.request.level = WARN", "logger.request.level = DEBUG"
            )
            self.log4j_file.write_text(text)

    def argv(self) -> list[str]:
        argv = [arg for arg in super().argv() if arg not in self._drop]
        return [argv[0], *self._jvm, *argv[1:]]


def _settings(state: Path, port: int) -> StackSettings:
    return StackSettings(
        state_dir=state,
        kafka_port=port,
        kafka_controller_port=port + 1,
        mariadb_port=port + 2,
        postgres_port=port + 3,
        pgsource_port=port + 4,
        services=(ServiceName.KAFKA,),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("action", choices=("up", "down"))
    parser.add_argument("state", type=Path)
    parser.add_argument("--port", type=int, required=True, help="the client port; the controller's is +1")
    parser.add_argument("--prop", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument(
        "--jvm", action="append", default=[], metavar="FLAG", help="e.g. -XX:MaxGCPauseMillis=20"
    )
    parser.add_argument("--drop", action="append", default=[], metavar="FLAG", help="e.g. -XX:+UseG1GC")
    parser.add_argument(
        "--request-log", action="store_true", help="kafka.request.logger at DEBUG: each request's times"
    )
    args = parser.parse_args(argv)
    props = dict(p.split("=", 1) for p in args.prop)
    kafka = PrivateKafka(
        _settings(args.state.resolve(), args.port), props, args.jvm, tuple(args.drop), args.request_log
    )
    if args.action == "down":
        print(kafka.stop())
        return 0
    kafka.settings.logs_dir.mkdir(parents=True, exist_ok=True)
    kafka.settings.pids_dir.mkdir(parents=True, exist_ok=True)
    _outcome, pid = kafka.launch()
    kafka.wait(pid)
    print(f"broker pid {pid} on 127.0.0.1:{args.port}, state {kafka.settings.state_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
