"""`tests/artifact_cache.py`: one build per key, shared by concurrent callers."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests import artifact_cache
from tests.artifact_cache import FileDigest
from tests.artifact_cache import cache_key
from tests.artifact_cache import cached

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Two processes (as two xdist workers) ask for one key at once; each build
# appends a line to a log and takes 1 s, so an unlocked second build would
# start before the first is written.
_CHILD = textwrap.dedent("""
    import json, os, sys, time
    from tests.artifact_cache import cached
    log, go = sys.argv[1], sys.argv[2]
    while not os.path.exists(go):
        time.sleep(0.01)

    def build():
        with open(log, "a") as file:
            file.write(f"{os.getpid()}\\n")
        time.sleep(1.0)
        return {"value": 42}

    def save(value, folder):
        with open(os.path.join(folder, "value.json"), "w") as file:
            json.dump(value, file)

    def load(folder):
        with open(os.path.join(folder, "value.json")) as file:
            return json.load(file)

    print(json.dumps(cached("demo", ["key", 1], build, save, load)))
""")


def _save(value, folder):
    with open(os.path.join(folder, "value.json"), "w") as file:
        json.dump(value, file)


def _load(folder):
    with open(os.path.join(folder, "value.json")) as file:
        return json.load(file)


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv(artifact_cache.ENVIRONMENT_VARIABLE, str(folder))
    return folder


def test_two_processes_build_once(cache_dir, tmp_path):
    log, go = tmp_path / "builds.log", tmp_path / "go"
    children = [subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(log), str(go)], cwd=ROOT,
        env={**os.environ, "PYTHONPATH": ROOT}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True) for _ in range(2)]
    go.touch()
    for child in children:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err[-2000:]
        assert json.loads(out) == {"value": 42}
    assert len(log.read_text().splitlines()) == 1
    (entry,) = [name for name in os.listdir(cache_dir) if not name.endswith(".lock")]
    assert entry.startswith("demo-") and len(entry) == len("demo-") + 32


def test_a_changed_input_builds_again_and_a_damaged_entry_is_rebuilt(cache_dir, tmp_path):
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"\x00" * 10)
    builds = []

    def build():
        builds.append(1)
        return {"n": len(builds)}

    def get():
        return cached("w", [FileDigest(weights), (1, 2)], build, _save, _load)

    assert get() == {"n": 1} and get() == {"n": 1} and len(builds) == 1
    weights.write_bytes(b"\x00" * 9 + b"\x01")  # same size, other bytes
    assert get() == {"n": 2} and len(builds) == 2
    (entry,) = [cache_dir / name for name in os.listdir(cache_dir)
                if name.startswith("w-") and not name.endswith(".lock")
                and cache_key([FileDigest(weights), (1, 2)])[:32] in name]
    (entry / "value.json").write_text("{not json")
    assert get() == {"n": 3} and len(builds) == 3
    assert get() == {"n": 3}


def test_keys_differ_by_type_and_order():
    assert cache_key(["1"]) != cache_key([1]) != cache_key([b"1"])
    assert cache_key([1, 2]) != cache_key([2, 1]) != cache_key([[1, 2]])


def test_zero_turns_it_off(monkeypatch):
    monkeypatch.setenv(artifact_cache.ENVIRONMENT_VARIABLE, "0")
    builds = []
    for _ in range(2):
        cached("off", [1], lambda: builds.append(1) or len(builds), _save, _load)
    assert builds == [1, 1]
