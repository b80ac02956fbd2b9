"""Run a sink call on a thread named like the embedded daemon's apply thread, as the daemon does.

Tests that count which thread did which part of a batch's work (made ahead on the daemon's thread,
or on the apply thread) call the sink through this; an error raised there is raised again here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

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
