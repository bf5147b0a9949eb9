"""Expensive, deterministic test inputs kept on disk, keyed by their inputs.

`cached(name, key_parts, build, save, load)` returns what `build()` made
for the same key before, read from `.cache/test-artifacts/` (git-ignored
with `.cache/`), or builds it once. The key is a SHA-256 of `key_parts`:
strings, bytes, JSON-able values, and `FileDigest(path)` for the content
of a file (the weights a result was computed from; the source of the code
that computed it). Whatever an input changes, the key changes.

Two xdist workers (or two `make test` runs) asking at once: an exclusive
`fcntl.flock` on `<key>.lock` makes the second wait for the first and then
read its result; the result is written in a temporary folder and renamed
into place, so a reader never sees half of one. A folder that fails to
load is built again.

Only values the tests compare *against* belong here (an independent
reference, such as the float64 numpy pass on SmolLM2's GGUF): what a test
checks is still computed by the test, every run.
`KERAS_LOWRANK_TEST_CACHE=0` turns the cache off; `KERAS_LOWRANK_TEST_CACHE`
set to a folder moves it.
"""

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_FOLDER = os.path.join(ROOT, ".cache", "test-artifacts")
ENVIRONMENT_VARIABLE = "KERAS_LOWRANK_TEST_CACHE"


class FileDigest:
    """A key part: the SHA-256 of a file's bytes (read in 1 MiB blocks)."""

    def __init__(self, path):
        self.path = os.fspath(path)

    def digest(self):
        sha = hashlib.sha256()
        with open(self.path, "rb") as file:
            for block in iter(lambda: file.read(2**20), b""):
                sha.update(block)
        return sha.hexdigest()


def cache_key(key_parts):
    """The hex SHA-256 of `key_parts`, in order."""
    sha = hashlib.sha256()
    for part in key_parts:
        if isinstance(part, FileDigest):
            encoded = b"file:" + part.digest().encode()
        elif isinstance(part, bytes):
            encoded = b"bytes:" + part
        else:
            encoded = b"json:" + json.dumps(part, sort_keys=True).encode()
        sha.update(len(encoded).to_bytes(8, "little") + encoded)
    return sha.hexdigest()


def cache_folder():
    """The cache's folder, or None when `KERAS_LOWRANK_TEST_CACHE=0`."""
    setting = os.environ.get(ENVIRONMENT_VARIABLE)
    if setting == "0":
        return None
    return setting or DEFAULT_FOLDER


@contextlib.contextmanager
def _locked(path):
    with open(path, "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def cached(name, key_parts, build, save, load):
    """`build()`'s result for this key: from disk when made before.

    Args:
        name: str. A readable prefix of the entry's folder.
        key_parts: what the result depends on (see `cache_key`).
        build: `() -> value`, run at most once per key while the entry
            lasts.
        save: `(value, folder) -> None`, writes the value into a new folder.
        load: `(folder) -> value`, reads it back.

    Returns:
        The value: `build()`'s own on the first call, `load`'s after.
    """
    root = cache_folder()
    if root is None:
        return build()
    os.makedirs(root, exist_ok=True)
    entry = os.path.join(root, f"{name}-{cache_key(key_parts)[:32]}")
    with _locked(entry + ".lock"):
        if os.path.isdir(entry):
            try:
                return load(entry)
            except Exception:  # a damaged entry: built again below
                shutil.rmtree(entry, ignore_errors=True)
        value = build()
        scratch = tempfile.mkdtemp(prefix=f".{name}-", dir=root)
        try:
            save(value, scratch)
            os.rename(scratch, entry)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return value
