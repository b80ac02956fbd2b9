"""benchmarks.e2e_cpu: a process's CPU by thread name, and its sockets' local ports to a given port
(how benchmarks.e2e finds the PostgreSQL backends serving `cdc sink`)."""

from __future__ import annotations

import os
import socket
import sys

import pytest

from benchmarks.e2e_cpu import by_thread, local_ports, sample_all, thread_shares

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def test_by_thread_names_this_process_and_counts_its_cpu() -> None:
    before = by_thread(os.getpid())
    sum(i * i for i in range(200_000))
    after = by_thread(os.getpid())
    assert before and set(before) <= set(after)
    shares = thread_shares(before, after, 1_000)
    assert sum(shares.values()) > 0


def test_local_ports_finds_the_connection_to_a_listening_port() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)) as client:
            accepted, _ = server.accept()
            with accepted:
                assert local_ports(os.getpid(), port) == [client.getsockname()[1]]
        assert local_ports(os.getpid(), port) == []


def test_sample_all_sums_and_gives_up_on_a_missing_process() -> None:
    one = sample_all([os.getpid()])
    assert one is not None and one.cpu_s > 0
    assert sample_all([]) is None
    assert sample_all([os.getpid(), 2**22 + 12345]) is None
