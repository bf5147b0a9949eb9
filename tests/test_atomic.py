"""`atomic_path`: what it replaces, what it refuses, and what a failure leaves."""

import os
import re

import pytest

from keras_lowrank import _atomic
from keras_lowrank._atomic import atomic_path
from keras_lowrank._atomic import check_target
from keras_lowrank._atomic import has_files

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
    with atomic_path(tmp_path / "model.keras", suffix=".keras") as tmp:
        assert os.path.dirname(tmp) == str(tmp_path)
        assert re.fullmatch(r"\.model\.keras\.[0-9a-f]{8}\.tmp\.keras",
                            os.path.basename(tmp))
        _write(tmp, "saved")
    assert _tree(tmp_path) == ["model.keras"]
