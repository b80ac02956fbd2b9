"""The sink thread of `cdc sink` (cdc/daemon/sink_thread.py): calls run one at a time, in order, on
one thread; a failure is raised on the polling thread and nothing after it runs; an applied batch is
let go at once; an interrupted wait leaves the call counted as in flight."""

from __future__ import annotations

import signal
import threading
import time
import weakref
from functools import partial
from types import FrameType

import pytest

from cdc.core.errors import SinkError
from cdc.daemon.sink_thread import SinkThread


def test_calls_run_in_order_on_one_thread() -> None:
    thread = SinkThread()
    seen: list[tuple[int, str]] = []
    for i in range(5):
        thread.start(partial(lambda i: seen.append((i, threading.current_thread().name)), i))
    assert thread.call(lambda: 42) == 42
    assert seen == [(i, "sink-apply") for i in range(5)]
    thread.close()


def test_a_failed_call_is_raised_and_nothing_after_it_runs() -> None:
    thread = SinkThread()
    ran: list[int] = []

    def fail() -> None:
        raise SinkError("sql:x: the batch was rolled back: constraint")

    thread.start(fail)
    deadline = time.monotonic() + 5
    while thread.busy and time.monotonic() < deadline:
        time.sleep(0.001)
    with pytest.raises(SinkError, match="constraint"):
        thread.check()  # never waits; raises what already failed
    thread.start(fail)
    with pytest.raises(SinkError, match="constraint"):
        thread.start(partial(ran.append, 1))
    thread.wait()
    assert ran == []
    thread.close()


def test_an_applied_batch_is_let_go_at_once() -> None:
    class Batch:
        pass

    thread = SinkThread()
    batch = Batch()
    gone = weakref.ref(batch)
    thread.start(partial(lambda b: None, batch))
    thread.wait()
    del batch
    # before: the thread's loop still held the call (and the batch) until the next one came
    assert gone() is None
    thread.close()


def test_an_interrupted_wait_leaves_the_call_in_flight() -> None:
    """A second SIGTERM raises KeyboardInterrupt in the polling thread's wait: the runner must see the
    apply as still running (and not wait for it again, nor close the sinks under it)."""
    thread = SinkThread()
    release = threading.Event()
    thread.start(release.wait)

    def interrupt(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        with pytest.raises(KeyboardInterrupt):
            thread.wait()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert thread.busy
    release.set()
    thread.wait()
    assert not thread.busy
    thread.close()
