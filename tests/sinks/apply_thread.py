"""Run a sink call on a thread named like the embedded daemon's apply thread, as the daemon does.

Tests that count which thread did which part of a batch's work (made ahead on the daemon's thread,
or on the apply thread) call the sink through this; an error raised there is raised again here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from sinks.contract import SinkBatch
from sinks.sql.sql_sink import SqlSink

APPLY_THREAD = "embedded-apply"


def on_apply_thread(work: Callable[[], None]) -> None:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as exc:  # noqa: BLE001 - raised on the test's thread
            errors.append(exc)

    thread = threading.Thread(target=run, name=APPLY_THREAD)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


def apply_as_daemon(sink: SqlSink, handed: list[SinkBatch], beside: SqlSink, plain: list[SinkBatch]) -> None:
    """``handed`` applied as the embedded daemon does (each batch prepared while the one before is
    applied, applied on the apply thread), and ``plain`` (the same changes, one record each) applied
    to ``beside`` by the per-change path, batch by batch; both flushed."""
    sink.prepare_columns(handed[0])
    for i, batch in enumerate(handed):
        if i + 1 < len(handed):
            sink.prepare_columns(handed[i + 1])  # as the daemon: the next one before this one applies
        on_apply_thread(lambda batch=batch: sink.apply(batch))  # type: ignore[misc]
        beside.apply(plain[i])
    sink.flush()
    beside.flush()
