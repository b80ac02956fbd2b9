"""cdc.daemon.heap_trim: trim after a batch only near the process's highest resident set."""

from __future__ import annotations

import subprocess
import sys

import pyarrow as pa
import pytest

from cdc.daemon.heap_trim import HeapTrim, resident_bytes

MiB = 1 << 20


class _Resident:
    """Resident-set readings the test sets, in place of /proc/self/statm's."""

    def __init__(self) -> None:
        self.value: int | None = 0

    def __call__(self) -> int | None:
        return self.value


@pytest.fixture
def system_pool() -> object:
    before = pa.default_memory_pool()
    pa.set_memory_pool(pa.system_memory_pool())
    yield
    pa.set_memory_pool(before)


@pytest.mark.usefixtures("system_pool")
def test_trims_only_within_the_margin_of_the_highest_resident_set() -> None:
    resident = _Resident()
    trim = HeapTrim(margin=16 * MiB, every_s=3600, resident=resident)
    done = []
    for mib in (200, 190, 185, 150, 183, 185, 201, 186, 184):
        resident.value = mib * MiB
        done.append(trim.after_batch())
    # 200 sets the mark; 190 and 185 are within 16 MiB of it, 150 and 183 are not; 201 raises it
    assert done == [True, True, True, False, False, True, True, True, False]
    assert trim.trims == 6


@pytest.mark.usefixtures("system_pool")
def test_trims_below_the_mark_once_every_s_has_passed() -> None:
    resident = _Resident()
    trim = HeapTrim(margin=MiB, every_s=0.0, resident=resident)
    resident.value = 300 * MiB
    assert trim.after_batch()
    resident.value = 100 * MiB
    assert trim.after_batch()  # no time limit: every batch, as before


@pytest.mark.usefixtures("system_pool")
def test_without_proc_every_batch_is_trimmed() -> None:
    resident = _Resident()
    resident.value = None
    trim = HeapTrim(margin=MiB, every_s=3600, resident=resident)
    assert all(trim.after_batch() for _ in range(3))


def test_another_pool_releases_its_cache_after_every_batch() -> None:
    # mimalloc: pyarrow's default pool in its wheels (the one an operator's
    # ARROW_DEFAULT_MEMORY_POOL would most likely name), built into the version we install
    before = pa.default_memory_pool()
    pool = pa.mimalloc_memory_pool()
    pa.set_memory_pool(pool)
    try:
        resident = _Resident()
        trim = HeapTrim(margin=16 * MiB, every_s=3600, resident=resident)
        for mib in (200, 100, 100):
            resident.value = mib * MiB
            assert trim.after_batch()
    finally:
        pa.set_memory_pool(before)


def test_resident_bytes_reads_this_process() -> None:
    value = resident_bytes()
    if sys.platform.startswith("linux"):
        assert value is not None and 10 * MiB < value < 64 * 1024 * MiB
    else:
        assert value is None


def test_the_module_does_not_load_pyarrow() -> None:
    # cdc sink imports it before memory_settings has chosen Arrow's pool (that must precede pyarrow)
    code = "import sys, cdc.daemon.heap_trim; print('pyarrow' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
