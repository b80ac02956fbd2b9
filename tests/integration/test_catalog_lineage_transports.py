"""The `lineage.transport` types besides file: HTTP (a loopback receiver, as Marquez's API takes them)
and Kafka (the real broker), each carrying a START event a consumer reads back."""

from __future__ import annotations

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer

from cdc.config import parse_config
from cdc.devstack.connections import StackConnections
from cdc.lineage.emitter import LineageRun

BASE = "name: lin-{n}\nsource: {{user: cdc, host: 127.0.0.1, port: 9, server_id: 4801}}\nstate_dir: {d}\n"


def test_http_transport_posts_events(tmp_path: Path) -> None:
    received: list[tuple[str, dict[str, Any], str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, json.loads(body), self.headers.get("Authorization", "")))
            self.send_response(201)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        text = BASE.format(n="http", d=tmp_path) + (
            f"lineage: {{transport: {{type: http, url: 'http://127.0.0.1:{server.server_port}',"
            " api_key: k3y}}\n"
        )
        run = LineageRun(parse_config(text, {}), "run")
        run.start()
        run.finish(0)
    finally:
        server.shutdown()
    assert [body["eventType"] for _, body, _ in received] == ["START", "COMPLETE"]
    assert received[0][0] == "/api/v1/lineage" and received[0][2] == "Bearer k3y"
    assert received[0][1]["job"]["name"] == "lin-http.run"


def test_kafka_transport_produces_events(stack: StackConnections, tmp_path: Path) -> None:
    topic = f"catalog-lineage-{uuid.uuid4().hex[:8]}"
    servers = stack.kafka.bootstrap_servers
    text = BASE.format(n="kafka", d=tmp_path) + (
        f"lineage: {{transport: {{type: kafka, topic: {topic}, bootstrap_servers: '{servers}'}}}}\n"
    )
    run = LineageRun(parse_config(text, {}), "sink")
    run.start()
    run.finish(2, "stopped")
    consumer = Consumer({"bootstrap.servers": servers, "group.id": topic, "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    events: list[dict[str, Any]] = []
    try:
        for _ in range(100):
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                events.append(json.loads(message.value()))
            if len(events) == 2:
                break
    finally:
        consumer.close()
    assert [e["eventType"] for e in events] == ["START", "FAIL"]
    assert events[1]["run"]["facets"]["errorMessage"]["message"] == "stopped"
