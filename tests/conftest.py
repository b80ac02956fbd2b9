"""Order for the parallel run (scripts/test.sh runs `pytest -n 2 --dist loadfile`): the long files
(marked `slow`, then the other folders that drive whole pipelines) are handed out first, the many
short unit and sink files last, where they fill the gaps; one long file started at the end would be
the whole run's tail. Within a file the order is unchanged (the sort is stable)."""

from __future__ import annotations

import pytest

_PIPELINE_FOLDERS = ("/tests/integration/", "/tests/snapshotter/", "/tests/reconciler/", "/tests/golden/")


def _weight(item: pytest.Item) -> tuple[int, int]:
    path = str(item.path)
    slow = item.get_closest_marker("slow") is not None
    return (0 if slow else 1, 0 if any(f in path for f in _PIPELINE_FOLDERS) else 1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    items.sort(key=_weight)
