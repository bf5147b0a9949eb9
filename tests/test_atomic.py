"""`atomic_path`: what it replaces, what it refuses, and what a failure leaves."""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest

from keras_lowrank.utils import atomic as _atomic
from keras_lowrank.utils.atomic import atomic_path
from keras_lowrank.utils.atomic import check_target
from keras_lowrank.utils.atomic import has_files

PRESET = has_files("config.json", "metadata.json")


def _write(path, text="x"):
    with open(path, "w") as file:
        file.write(text)


def _tree(folder):
    return sorted(
        os.path.relpath(os.path.join(root, name), folder)
        for root, dirs, files in os.walk(folder) for name in dirs + files
    )


@pytest.fixture
def umask():
    def set_umask(mask):
        previous.append(os.umask(mask))

    previous = []
    yield set_umask
    if previous:
        os.umask(previous[0])


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_a_written_file_gets_the_mode_open_would_give(tmp_path, umask, mask, mode):
    umask(mask)
    with atomic_path(tmp_path / "out.txt") as tmp:
        _write(tmp)
    assert os.stat(tmp_path / "out.txt").st_mode & 0o777 == mode


def test_the_file_is_synced_before_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.fstat(fd).st_ino))
        real_fsync(fd)

    def replace(source, target):
        events.append(("replace", os.stat(source).st_ino))
        real_replace(source, target)

    monkeypatch.setattr(_atomic.os, "fsync", fsync)
    monkeypatch.setattr(_atomic.os, "replace", replace)
    with atomic_path(tmp_path / "out.txt") as tmp:
        _write(tmp, "data")
    inode = os.stat(tmp_path / "out.txt").st_ino
    assert events.index(("fsync", inode)) < events.index(("replace", inode))
    assert (tmp_path / "out.txt").read_text() == "data"


def test_every_file_of_a_folder_is_synced(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(
        _atomic.os, "fsync",
        lambda fd: (synced.append(os.fstat(fd).st_ino), real_fsync(fd)),
    )
    with atomic_path(tmp_path / "model", directory=True) as tmp:
        os.makedirs(os.path.join(tmp, "variables"))
        _write(os.path.join(tmp, "saved_model.pb"))
        _write(os.path.join(tmp, "variables", "variables.index"))
    for name in ("saved_model.pb", "variables/variables.index"):
        assert os.stat(tmp_path / "model" / name).st_ino in synced


def test_a_failed_write_removes_the_parents_it_created(tmp_path):
    (tmp_path / "kept").mkdir()
    with pytest.raises(KeyError):
        with atomic_path(tmp_path / "kept" / "new" / "deeper" / "out.txt") as tmp:
            _write(tmp)
            raise KeyError("writer failed")
    assert _tree(tmp_path) == ["kept"]


def test_a_failed_write_leaves_the_old_file(tmp_path):
    _write(tmp_path / "out.txt", "old")
    with pytest.raises(KeyError):
        with atomic_path(tmp_path / "out.txt") as tmp:
            _write(tmp, "new")
            raise KeyError("writer failed")
    assert _tree(tmp_path) == ["out.txt"]
    assert (tmp_path / "out.txt").read_text() == "old"


def test_a_folder_holding_other_files_is_refused_before_the_write(tmp_path):
    target = tmp_path / "mywork"
    target.mkdir()
    _write(target / "notes.txt", "mine")
    message = (
        f"'{target}' is an existing folder holding other files (notes.txt), "
        "not an earlier output of this kind (a folder with config.json and "
        "metadata.json); it was left as it is. Choose another path or remove "
        "the folder."
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        with atomic_path(target, directory=True, replaceable=PRESET):
            pytest.fail("the writer must not run")
    assert _tree(tmp_path) == ["mywork", "mywork/notes.txt"]
    assert (target / "notes.txt").read_text() == "mine"


def test_without_replaceable_only_an_empty_folder_is_replaced(tmp_path):
    (tmp_path / "empty").mkdir()
    with atomic_path(tmp_path / "empty", directory=True) as tmp:
        os.mkdir(tmp)
        _write(os.path.join(tmp, "a.txt"))
    assert _tree(tmp_path) == ["empty", "empty/a.txt"]
    with pytest.raises(ValueError, match=r"holding other files \(a.txt\), not an "
                       r"earlier output of this kind; it was left as it is"):
        check_target(tmp_path / "empty", directory=True)


def test_an_earlier_artifact_of_the_same_kind_is_replaced(tmp_path):
    target = tmp_path / "preset"
    target.mkdir()
    for name in ("config.json", "metadata.json", "model.weights.h5"):
        _write(target / name, "old")
    with atomic_path(target, directory=True, replaceable=PRESET) as tmp:
        os.mkdir(tmp)
        _write(os.path.join(tmp, "config.json"), "new")
        _write(os.path.join(tmp, "metadata.json"), "new")
    assert _tree(tmp_path) == ["preset", "preset/config.json", "preset/metadata.json"]
    assert (target / "config.json").read_text() == "new"


def test_a_folder_filled_during_the_write_is_kept(tmp_path):
    target = tmp_path / "preset"
    target.mkdir()
    with pytest.raises(ValueError, match=r"holding other files \(notes.txt\)"):
        with atomic_path(target, directory=True, replaceable=PRESET) as tmp:
            os.mkdir(tmp)
            _write(os.path.join(tmp, "config.json"))
            _write(target / "notes.txt", "written meanwhile")
    assert _tree(tmp_path) == ["preset", "preset/notes.txt"]


@pytest.mark.parametrize(
    "existing, target, directory, message",
    [
        ("folder", "folder", False,
         "Cannot write a file at '{root}/folder': it is an existing folder. "
         "Choose another path or remove the folder."),
        ("file", "file", True,
         "Cannot write a folder at '{root}/file': it is an existing file. "
         "Choose another path or remove the file."),
        ("file", "file/sub/out.keras", False,
         "Cannot write '{root}/file/sub/out.keras': '{root}/file' is a file, "
         "not a folder. Choose another path or remove that file."),
    ],
)
def test_a_target_of_the_wrong_kind_is_refused(tmp_path, existing, target,
                                               directory, message):
    if existing == "folder":
        (tmp_path / "folder").mkdir()
        _write(tmp_path / "folder" / "keep.txt")
    else:
        _write(tmp_path / "file", "keep")
    before = _tree(tmp_path)
    expected = message.format(root=tmp_path)
    with pytest.raises(ValueError, match=f"^{re.escape(expected)}$"):
        with atomic_path(tmp_path / target, directory=directory):
            pytest.fail("the writer must not run")
    assert _tree(tmp_path) == before


def test_suffix_ends_the_temporary_name(tmp_path):
    with atomic_path(tmp_path / "model", suffix=".keras") as tmp:
        assert os.path.basename(tmp) == "model.keras"
        _write(tmp, "saved")
    with atomic_path(tmp_path / "other.keras", suffix=".keras") as tmp:
        assert os.path.basename(tmp) == "other.keras"
        _write(tmp, "saved")
    assert _tree(tmp_path) == ["model", "other.keras"]


def test_the_temporary_lies_in_a_hidden_folder_beside_the_target(tmp_path):
    with atomic_path(tmp_path / "out.txt") as tmp:
        workspace = os.path.dirname(tmp)
        assert os.path.dirname(workspace) == str(tmp_path)
        assert re.fullmatch(
            rf"\.out\.txt\.{os.getpid()}-[0-9a-f]{{8}}\.[0-9a-f]{{8}}\.tmp",
            os.path.basename(workspace))
        _write(tmp)
    assert _tree(tmp_path) == ["out.txt"]


# === Permissions: every output follows the umask ===


def _replace_like_safetensors(tmp, data=b"tensors"):
    # safetensors writes its own 0600 temporary beside `tmp`, then renames it.
    fd, own = tempfile.mkstemp(dir=os.path.dirname(tmp))
    with os.fdopen(fd, "wb") as file:
        file.write(data)
    os.replace(own, tmp)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_a_file_the_writer_replaced_gets_the_umask_mode(tmp_path, umask, mask, mode):
    umask(mask)
    with atomic_path(tmp_path / "out.bin") as tmp:
        _replace_like_safetensors(tmp)
    assert os.stat(tmp_path / "out.bin").st_mode & 0o777 == mode
    assert (tmp_path / "out.bin").read_bytes() == b"tensors"
    assert _tree(tmp_path) == ["out.bin"]


def test_safetensors_save_file_gets_the_umask_mode(tmp_path, umask):
    from safetensors.numpy import save_file

    umask(0o022)
    with atomic_path(tmp_path / "adapters.safetensors") as tmp:
        save_file({"a": np.ones((4, 4), "float32")}, tmp)
    assert os.stat(tmp_path / "adapters.safetensors").st_mode & 0o777 == 0o644
    assert _tree(tmp_path) == ["adapters.safetensors"]


def test_every_file_and_folder_of_a_written_folder_gets_the_umask_modes(
        tmp_path, umask):
    umask(0o022)
    with atomic_path(tmp_path / "model", directory=True) as tmp:
        os.makedirs(os.path.join(tmp, "variables"), mode=0o700)
        _write(os.path.join(tmp, "saved_model.pb"))
        _replace_like_safetensors(os.path.join(tmp, "variables", "data"))
    modes = {name: os.stat(tmp_path / "model" / name).st_mode & 0o777
             for name in ("", "variables", "saved_model.pb", "variables/data")}
    assert modes == {"": 0o755, "variables": 0o755, "saved_model.pb": 0o644,
                     "variables/data": 0o644}


# === Stale temporaries: what a killed write left ===


def _dead_pid():
    """The id of a process that has exited (and been waited for)."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(done.stdout)


def _temporary(folder, base, pid, host=_atomic._HOST_ID, size=1000):
    """A temporary folder as a write of `base` by `pid` on `host` leaves it."""
    workspace = folder / f".{base}.{pid}-{host}.0123abcd.tmp"
    workspace.mkdir()
    (workspace / base).write_bytes(b"\0" * size)
    return workspace


_KILLED_WRITER = """
import importlib.util, os, signal, sys
spec = importlib.util.spec_from_file_location("_atomic", sys.argv[1])
atomic = importlib.util.module_from_spec(spec)
spec.loader.exec_module(atomic)
with atomic.atomic_path(sys.argv[2]) as tmp:
    with open(tmp, "wb") as file:
        file.write(b"\\1" * 100_000)
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_killed_write_is_cleaned_up_by_the_next_write(tmp_path):
    _write(tmp_path / "out.bin", "old")
    done = subprocess.run(
        [sys.executable, "-c", _KILLED_WRITER, _atomic.__file__,
         str(tmp_path / "out.bin")], capture_output=True)
    assert done.returncode == -signal.SIGKILL, done.stderr
    (left,) = [name for name in os.listdir(tmp_path) if name != "out.bin"]
    assert os.path.getsize(tmp_path / left / "out.bin") == 100_000
    assert (tmp_path / "out.bin").read_text() == "old"
    with atomic_path(tmp_path / "out.bin") as tmp:
        _write(tmp, "new")
    assert _tree(tmp_path) == ["out.bin"]
    assert (tmp_path / "out.bin").read_text() == "new"


def test_a_running_writers_temporary_is_kept(tmp_path):
    # This process and its parent are running: their temporaries are kept,
    # so concurrent writes of one target each complete.
    ours = _temporary(tmp_path, "out.bin", os.getpid())
    parents = _temporary(tmp_path, "out.bin", os.getppid())
    with atomic_path(tmp_path / "out.bin") as outer:
        with atomic_path(tmp_path / "out.bin") as inner:
            _write(inner, "inner")
        assert os.path.isfile(outer)
        _write(outer, "outer")
    assert (tmp_path / "out.bin").read_text() == "outer"
    assert _tree(tmp_path) == sorted([
        "out.bin", ours.name, f"{ours.name}/out.bin", parents.name,
        f"{parents.name}/out.bin"])


def test_only_temporaries_of_our_naming_and_target_are_removed(tmp_path):
    dead, host = _dead_pid(), _atomic._HOST_ID
    stale = _temporary(tmp_path, "out.bin", dead)
    kept = [
        _temporary(tmp_path, "other.bin", dead).name,  # another target
        _temporary(tmp_path, "out.bin.1", dead).name,  # another target
        f".out.bin.{dead}-{host}.0123abcd.tmp.bak",
        f".out.bin.{dead}.0123abcd.tmp",
        ".out.bin.0123abcd.tmp",  # the earlier scheme, without a process id
        ".tmpAbC123",  # safetensors' own
        f".out.bin.{'9' * 30}-{host}.0123abcd.tmp",  # no process id
    ]
    for name in kept[2:]:
        (tmp_path / name).mkdir()
    _write(tmp_path / f".out.bin.{dead}-{host}.fedcba98.tmp")  # a file, not ours
    kept.append(f".out.bin.{dead}-{host}.fedcba98.tmp")
    with atomic_path(tmp_path / "out.bin") as tmp:
        _write(tmp)
    assert not stale.exists()
    assert sorted(name for name in os.listdir(tmp_path) if name != "out.bin") == (
        sorted(kept))


def test_another_machines_temporary_is_removed_after_a_day(tmp_path):
    other = "0" * 8 if _atomic._HOST_ID != "0" * 8 else "1" * 8
    recent = _temporary(tmp_path, "out.bin", 1, host=other)
    old = _temporary(tmp_path, "out.bin", 2, host=other)
    day_ago = time.time() - _atomic.STALE_SECONDS - 60
    for path in (old / "out.bin", old):
        os.utime(path, (day_ago, day_ago))
    with atomic_path(tmp_path / "out.bin") as tmp:
        _write(tmp)
    assert recent.exists() and not old.exists()


def test_a_replacement_killed_between_its_renames_is_put_back(tmp_path):
    # Killed after moving the earlier folder aside, before moving the new
    # one in: the earlier folder is only in the temporary folder.
    workspace = _temporary(tmp_path, "preset", _dead_pid())
    previous = workspace / "preset.previous"
    previous.mkdir()
    for name in ("config.json", "metadata.json"):
        _write(previous / name, "earlier")
    with pytest.raises(KeyError):
        with atomic_path(tmp_path / "preset", directory=True, replaceable=PRESET):
            raise KeyError("writer failed")
    assert _tree(tmp_path) == ["preset", "preset/config.json", "preset/metadata.json"]
    assert (tmp_path / "preset" / "config.json").read_text() == "earlier"


# === Issue 26: a folder the writer may not write to ===

_AS_ANOTHER_USER = """
import importlib.util, os, sys
spec = importlib.util.spec_from_file_location("atomic", sys.argv[1])
atomic = importlib.util.module_from_spec(spec)
spec.loader.exec_module(atomic)
if os.geteuid() == 0:  # root writes anywhere: run as nobody
    os.setgid(65534)
    os.setuid(65534)
try:
    with atomic.atomic_path(sys.argv[2]) as tmp:
        with open(tmp, "w") as file:
            file.write("x")
except PermissionError as error:
    print(type(error).__name__, error)
else:
    print("written")
"""


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
@pytest.mark.parametrize("target", ["out.bin", "new/out.bin"], ids=["file", "missing-folder"])
def test_read_only_folder_names_the_target_not_the_temporary(target):
    # Not `tmp_path`: its parents are closed to the user the writer runs as.
    root = tempfile.mkdtemp(prefix="klr-read-only-")
    try:
        os.chmod(root, 0o755)
        read_only = os.path.join(root, "read_only")
        os.mkdir(read_only, 0o555)
        os.chmod(read_only, 0o555)
        path = os.path.join(read_only, target)
        done = subprocess.run(
            [sys.executable, "-c", _AS_ANOTHER_USER, _atomic.__file__, path],
            capture_output=True, text=True, timeout=60, check=True)
        assert done.stdout.strip() == (
            f"PermissionError [Errno 13] Cannot write '{path}': permission "
            f"denied to create files in '{read_only}' (Permission denied). "
            "Nothing was written. Choose a folder you can write to, or get "
            "write permission on that one.")
        assert os.listdir(read_only) == []
    finally:
        os.chmod(os.path.join(root, "read_only"), 0o755)
        shutil.rmtree(root)
