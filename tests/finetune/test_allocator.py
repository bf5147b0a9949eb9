"""`keep_freed_memory`: glibc's malloc settings, applied by the command line."""

import ctypes
import sys

import pytest

from keras_lowrank.cli.main import main
from keras_lowrank.finetune import allocator


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_settings_are_applied_with_mallopt(monkeypatch):
    monkeypatch.delenv(allocator.ENVIRONMENT_VARIABLE, raising=False)
    calls = []

    class Mallopt:
        def __call__(self, parameter, value):
            calls.append((parameter, value))
            return 1

    class FakeLibc:
        def __init__(self, name):
            self.gnu_get_libc_version = object()
            self.mallopt = Mallopt()

    real = ctypes.CDLL
    ctypes.CDLL = FakeLibc  # no real allocator setting changes in the tests
    try:
        applied = allocator.keep_freed_memory()
    finally:
        ctypes.CDLL = real
    assert applied == {"M_MMAP_THRESHOLD": 32 * 2**20,
                       "M_TRIM_THRESHOLD": 2**30, "M_TOP_PAD": 64 * 2**20}
    assert calls == [(-3, 32 * 2**20), (-1, 2**30), (-2, 64 * 2**20)]


def test_the_environment_turns_it_off(monkeypatch):
    # tests/conftest.py does, for the suite's in-process command lines.
    monkeypatch.setenv(allocator.ENVIRONMENT_VARIABLE, "0")
    assert allocator.keep_freed_memory() == {}


def test_nothing_is_applied_without_glibc(monkeypatch):
    monkeypatch.setattr(allocator.sys, "platform", "darwin")
    assert allocator.keep_freed_memory() == {}


def test_the_command_line_applies_them_before_the_run(monkeypatch, tmp_path):
    import keras_lowrank.finetune

    order = []
    monkeypatch.setattr(allocator, "keep_freed_memory",
                        lambda: order.append("allocator") or {})
    monkeypatch.setattr(keras_lowrank.finetune, "finetune",
                        lambda options, log: order.append("finetune") or {"exports": {}})
    assert main(["finetune", "--out", str(tmp_path / "run"), "--export", "none"]) == 0
    assert order == ["allocator", "finetune"]
