"""Loaded by benchmarks.ice4_threads' children only: each Python thread's OS name (``comm``) is its
Python name, so that /proc's per-thread CPU says which thread it is."""

import ctypes
import threading

_libc = ctypes.CDLL(None)
_original = threading.Thread.run


def _named_run(self: threading.Thread) -> None:
    _libc.prctl(15, self.name.replace(" ", "")[:15].encode(), 0, 0, 0)  # PR_SET_NAME
    _original(self)


threading.Thread.run = _named_run  # type: ignore[method-assign]

# ICE4_GC_LOG=path: every collection's generation, start and duration (perf_counter), written at exit
import os as _os  # noqa: E402

if _os.environ.get("ICE4_GC_LOG"):
    import atexit
    import gc
    import json
    import time

    _events: list[tuple[int, float, float, str]] = []
    _started: dict[int, float] = {}

    def _gc_callback(phase: str, info: dict[str, int]) -> None:
        ident = threading.get_ident()
        if phase == "start":
            _started[ident] = time.perf_counter()
        else:
            began = _started.pop(ident, time.perf_counter())
            _events.append(
                (info["generation"], began, time.perf_counter() - began, threading.current_thread().name)
            )

    gc.callbacks.append(_gc_callback)

    def _dump() -> None:
        with open(_os.environ["ICE4_GC_LOG"], "w") as out:
            json.dump({"now": time.perf_counter(), "events": _events}, out)

    atexit.register(_dump)
