"""Atomic writes: a temporary sibling, synced, then `os.replace`."""

import contextlib
import os
import secrets
import shutil
import tempfile

# The mode `open(path, "w")` asks for; the kernel applies the umask to it.
_NEW_FILE_MODE = 0o666


def has_files(*names):
    """A `replaceable` test: a folder holding every one of `names`.

    Example:
    ```python
    is_saved_model = has_files("saved_model.pb")
    is_preset = has_files("config.json", "metadata.json")
    ```
    """

    def replaceable(folder):
        return all(os.path.isfile(os.path.join(folder, name)) for name in names)

    replaceable.description = " and ".join(names)
    return replaceable


def check_target(path, *, directory=False, replaceable=None):
    """Raises unless `atomic_path` could put a new file or folder at `path`.

    Creates nothing. Call it before slow work, so that a bad `--out` fails
    first; `atomic_path` calls it too.

    Args:
        path: str or path. The file or folder to write.
        directory: bool. Whether a folder is written.
        replaceable: for `directory=True`, a callable `folder -> bool` that
            recognizes an earlier artifact of the same kind (see
            `has_files`). An existing folder is replaced only when it is
            empty or `replaceable` accepts it.

    Raises:
        ValueError: a file stands where a parent folder should be, a folder
            stands where a file goes (or the other way round), or the
            existing folder holds something else.
    """
    path = os.fspath(path)
    ancestor = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(ancestor):
        ancestor = os.path.dirname(ancestor)
    if not os.path.isdir(ancestor):
        raise ValueError(
            f"Cannot write '{path}': '{ancestor}' is a file, not a folder. "
            "Choose another path or remove that file."
        )
    if directory:
        if os.path.exists(path) and not os.path.isdir(path):
            raise ValueError(
                f"Cannot write a folder at '{path}': it is an existing file. "
                "Choose another path or remove the file."
            )
        if os.path.isdir(path) and os.listdir(path):
            if replaceable is None or not replaceable(path):
                raise ValueError(_occupied_message(path, replaceable))
    elif os.path.isdir(path):
        raise ValueError(
            f"Cannot write a file at '{path}': it is an existing folder. "
            "Choose another path or remove the folder."
        )


@contextlib.contextmanager
def atomic_path(path, *, directory=False, replaceable=None, suffix=""):
    """Yields a temporary path next to `path`; moves it into place on success.

    Before anything is created, `check_target(path, directory=directory,
    replaceable=replaceable)` runs: an existing folder is only replaced when
    it is empty or an earlier artifact of the same kind. A temporary file
    gets the mode `open()` would give (0o666 less the umask) and is synced
    to disk before the rename, as is every file of a temporary folder. On
    any error the temporary file or folder, and the parent folders created
    for it, are removed; whatever was at `path` is left as it was.

    Args:
        path: str or path. The file or folder to write.
        directory: bool. Yield a folder path (not yet created: the writer
            creates it) instead of an empty file.
        replaceable: see `check_target`.
        suffix: str. Ends the temporary name, for writers that insist on an
            extension (Keras saves only to names ending in `.keras`).

    Raises:
        ValueError: from `check_target`, before anything is written.

    Example:
    ```python
    with atomic_path("adapter.safetensors") as tmp:
        safetensors.numpy.save_file(tensors, tmp)
    with atomic_path("export", directory=True,
                     replaceable=has_files("saved_model.pb")) as tmp:
        tf.saved_model.save(module, tmp)
    ```
    """
    path = os.fspath(path)
    check_target(path, directory=directory, replaceable=replaceable)
    parent = os.path.dirname(os.path.abspath(path))
    created = _missing_folders(parent)
    base = os.path.basename(path)
    tmp = None
    try:
        os.makedirs(parent, exist_ok=True)
        if directory:
            tmp = tempfile.mkdtemp(
                prefix=f".{base}.", suffix=f".tmp{suffix}", dir=parent
            )
            os.rmdir(tmp)  # writers expect to create it themselves
        else:
            tmp = _new_file(parent, base, suffix)
        yield tmp
        _sync(tmp)
        # Again: the writer may have run long, and `path` may have changed.
        check_target(path, directory=directory, replaceable=replaceable)
        if directory and os.path.isdir(path):
            _replace_folder(tmp, path)
        else:
            os.replace(tmp, path)
        _sync_folder(parent)
    except BaseException:
        if tmp is not None and os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp is not None and os.path.lexists(tmp):
            os.remove(tmp)
        _remove_empty(created)
        raise


def _replace_folder(tmp, path):
    # A folder cannot be renamed over a non-empty one: move the old aside.
    parent, base = os.path.split(os.path.abspath(path))
    old = tempfile.mkdtemp(prefix=f".{base}.", suffix=".old", dir=parent)
    os.rmdir(old)
    os.replace(path, old)
    try:
        os.replace(tmp, path)
    except BaseException:
        os.replace(old, path)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _occupied_message(path, replaceable):
    entries = sorted(os.listdir(path))
    shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
    expected = getattr(replaceable, "description", None)
    kind = f" (a folder with {expected})" if expected else ""
    return (
        f"'{path}' is an existing folder holding other files ({shown}), not "
        f"an earlier output of this kind{kind}; it was left as it is. Choose "
        "another path or remove the folder."
    )


def _missing_folders(parent):
    """`parent` and its ancestors that do not exist yet, deepest first."""
    missing = []
    folder = parent
    while not os.path.isdir(folder):
        missing.append(folder)
        folder = os.path.dirname(folder)
    return missing


def _remove_empty(folders):
    """Removes the folders `atomic_path` created, deepest first, if empty."""
    for folder in folders:
        try:
            os.rmdir(folder)
        except FileNotFoundError:
            continue
        except OSError:  # someone else put something there: keep it
            return


def _new_file(parent, base, suffix):
    # Not `mkstemp`: it makes the file 0600 whatever the umask.
    while True:
        tmp = os.path.join(parent, f".{base}.{secrets.token_hex(4)}.tmp{suffix}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _NEW_FILE_MODE)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp


def _sync(tmp):
    """Flushes what the writer wrote at `tmp` (a file or a tree) to disk."""
    if not os.path.isdir(tmp):
        _fsync_file(tmp)
        return
    for root, _, files in os.walk(tmp):
        for name in files:
            _fsync_file(os.path.join(root, name))
        _sync_folder(root)


def _fsync_file(path):
    if os.path.islink(path):
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_folder(folder):
    # Makes the rename itself durable; not every platform can open a folder.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
