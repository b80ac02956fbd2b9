"""Run one piece of work per item on its own thread, all released at the same moment (processes
started together on one target), and collect what each raised."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


def at_once(items: Sequence[T], work: Callable[[T], object]) -> list[BaseException]:
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(items))

    def run(item: T) -> None:
        barrier.wait()
        try:
            work(item)
        except BaseException as exc:  # noqa: BLE001 - returned to the caller
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(item,)) for item in items]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors
