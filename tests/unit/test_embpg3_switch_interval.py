"""Embedded mode shortens the GIL switch interval while it applies, and puts it back after."""

from __future__ import annotations

import sys

from cdc.daemon.gil_switch import APPLY_SWITCH_INTERVAL_S, shorter_switch_interval


def test_shorter_for_the_block_then_back() -> None:
    before = sys.getswitchinterval()
    try:
        sys.setswitchinterval(0.005)
        with shorter_switch_interval():
            assert sys.getswitchinterval() == APPLY_SWITCH_INTERVAL_S < 0.005
        assert sys.getswitchinterval() == 0.005
    finally:
        sys.setswitchinterval(before)


def test_never_longer_and_put_back_after_an_error() -> None:
    before = sys.getswitchinterval()
    try:
        sys.setswitchinterval(0.0002)
        with shorter_switch_interval():
            assert sys.getswitchinterval() == 0.0002  # already shorter: left as it is
        sys.setswitchinterval(0.005)
        try:
            with shorter_switch_interval(0.002):
                assert sys.getswitchinterval() == 0.002
                raise RuntimeError("the apply failed")
        except RuntimeError:
            pass
        assert sys.getswitchinterval() == 0.005
    finally:
        sys.setswitchinterval(before)
