"""`keep_freed_memory`: glibc's malloc settings, applied by the command line."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from keras_lowrank.cli.main import main
from keras_lowrank.finetune import allocator


# Loads allocator.py on its own (no TensorFlow: the child starts in ~0.1 s)
# and reads glibc's own counters (`mallinfo2`) around one 24 MiB block.
_CHILD = textwrap.dedent("""
    import ctypes, importlib.util, json, sys

    class Mallinfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
            "fsmblks", "uordblks", "fordblks", "keepcost")]

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = Mallinfo2
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = (ctypes.c_size_t,)
    libc.free.argtypes = (ctypes.c_void_p,)
    spec = importlib.util.spec_from_file_location("allocator", sys.argv[1])
    allocator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(allocator)
    applied = allocator.keep_freed_memory() if sys.argv[2] == "apply" else {}
    before = libc.mallinfo2()
    block = libc.malloc(24 * 2**20)
    during = libc.mallinfo2()
    libc.free(block)
    after = libc.mallinfo2()
    print(json.dumps({"applied": applied, "before": before.arena,
                      "mapped": during.hblks - before.hblks,
                      "mapped_bytes": during.hblkhd - before.hblkhd,
                      "during": during.arena, "after": after.arena}))
""")
MIB = 2**20


def _malloc_in_a_child(mode):
    """Runs glibc's real malloc in a fresh process: the settings are
    process-wide and not undone, so this process's allocator is untouched."""
    environ = {key: value for key, value in os.environ.items()
               if key != allocator.ENVIRONMENT_VARIABLE}
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, allocator.__file__, mode], env=environ,
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_settings_are_applied_with_mallopt():
    plain, kept = _malloc_in_a_child("none"), _malloc_in_a_child("apply")
    assert plain["applied"] == {}
    assert kept["applied"] == {"M_MMAP_THRESHOLD": 32 * MIB,
                               "M_TRIM_THRESHOLD": 2**30, "M_TOP_PAD": 64 * MIB}
    # glibc's defaults: a 24 MiB block is its own mmap, the heap is as it was.
    assert plain["mapped"] == 1 and plain["mapped_bytes"] >= 24 * MIB
    assert plain["during"] == plain["after"] == plain["before"]
    # M_MMAP_THRESHOLD: it comes from the heap; M_TOP_PAD: the heap grows by
    # the block plus 64 MiB (measured 87.8 MiB, less the free space it had);
    # M_TRIM_THRESHOLD: freeing it gives nothing back.
    assert kept["mapped"] == 0 and kept["mapped_bytes"] == 0
    assert kept["during"] - kept["before"] >= 24 * MIB + 64 * MIB - kept["before"]
    assert kept["after"] == kept["during"]


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
