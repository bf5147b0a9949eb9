"""Atomic writes: a hidden temporary folder beside the target, then a rename.

Every write goes through a temporary folder in the target's own folder,
named `.<target name>.<pid>-<host id>.<8 hex digits>.tmp`, which holds the
file or folder being written and whatever side files its writer makes
(safetensors, for one, writes its own `.tmpXXXXXX` and renames it over the
path it was given). On success the output is synced, given the umask's
permissions and renamed into place, and the temporary folder removed; on an
error or an interrupt the temporary folder is removed and the target is as
it was.

A killed process cleans nothing up. The next write to the same target
removes the temporary folders of that target that are stale, and only
those (`_is_stale`):
- one named with this machine's host id (a hash of the host name) is stale
  when the process whose id it carries is no longer running (POSIX only);
- any other (written from another machine on a shared file system, or
  where process ids cannot be checked) is stale when nothing in it changed
  for `STALE_SECONDS`.
A running writer's temporary folder is never removed, so concurrent writes
of one target each complete, and the last rename wins. A replacement killed
between its two renames left the earlier output only in its temporary
folder: the cleanup puts it back when nothing has taken its place.
"""

import contextlib
import hashlib
import os
import re
import secrets
import shutil
import socket
import time

# Modes `open(path, "w")` and `os.mkdir` ask for; the kernel applies the umask.
_NEW_FILE_MODE = 0o666
_NEW_FOLDER_MODE = 0o777
# A day: longer than any write, so that a live writer of another machine
# (whose process cannot be checked from here) is never cleaned up.
STALE_SECONDS = 24 * 3600
_HOST_ID = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
# What follows `.<target name>.` in the name of a temporary folder.
_TEMPORARY = re.compile(
    r"(?P<pid>[1-9][0-9]{0,9})-(?P<host>[0-9a-f]{8})\.[0-9a-f]{8}\.tmp")
# A replaced folder waits inside the temporary folder as `<name>.previous`,
# beside the new output, which keeps the target's own name.
_PREVIOUS = ".previous"


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
    """Yields a temporary path for `path`; moves it into place on success.

    Before anything is created, `check_target(path, directory=directory,
    replaceable=replaceable)` runs: an existing folder is only replaced when
    it is empty or an earlier artifact of the same kind. Then the stale
    temporary folders of earlier writes of `path` are removed (see the
    module docstring). The yielded path lies in a new hidden folder beside
    `path` and has the same name (plus `suffix`). On success every file
    written is synced to disk and given the mode `open()` gives (0o666 less
    the umask; folders 0o777 less the umask), even where the writer
    replaced the file it was given, and then renamed to `path`. On any
    error the temporary folder, and the parent folders created for it, are
    removed; whatever was at `path` is left as it was.

    Args:
        path: str or path. The file or folder to write.
        directory: bool. Yield a folder path (not yet created: the writer
            creates it) instead of an empty file.
        replaceable: see `check_target`.
        suffix: str. Ends the temporary name, for writers that insist on an
            extension (Keras saves only to names ending in `.keras`); not
            repeated when the name already ends with it.

    Raises:
        ValueError: from `check_target`, before anything is written.
        PermissionError: the folder of `path` (or one to create above it)
            is not writable; the message names `path` and that folder.

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
    workspace = None
    try:
        try:
            os.makedirs(parent, exist_ok=True)
            _remove_stale(parent, base)
            workspace = _new_workspace(parent, base)
        except PermissionError as error:
            raise _permission_denied(path, error) from None
        folder_mode = os.stat(workspace).st_mode & 0o777  # the umask's
        tmp = os.path.join(workspace, base if base.endswith(suffix) else base + suffix)
        if not directory:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _NEW_FILE_MODE))
        yield tmp
        _finish(tmp, folder_mode)
        # Again: the writer may have run long, and `path` may have changed.
        check_target(path, directory=directory, replaceable=replaceable)
        if directory and os.path.isdir(path):
            _replace_folder(tmp, path, os.path.join(workspace, base + _PREVIOUS))
        else:
            os.replace(tmp, path)
        _sync_folder(parent)
    except BaseException:
        if workspace is not None:
            _discard(workspace, path)
        _remove_empty(created)
        raise
    _discard(workspace, path)


def _permission_denied(path, error):
    """The error of a folder that refused the temporary folder, naming `path`.

    The raw error names the hidden temporary folder, which the user never
    chose and which does not exist afterwards.
    """
    refused = os.path.dirname(os.path.abspath(error.filename or path))
    return PermissionError(
        error.errno,
        f"Cannot write '{path}': permission denied to create files in "
        f"'{refused}' ({error.strerror}). Nothing was written. Choose a "
        "folder you can write to, or get write permission on that one.",
    )


def _replace_folder(tmp, path, previous):
    # A folder cannot be renamed over a non-empty one: move the old aside.
    os.replace(path, previous)
    try:
        os.replace(tmp, path)
    except BaseException:
        os.replace(previous, path)
        raise


def _new_workspace(parent, base):
    while True:
        token = secrets.token_hex(4)
        workspace = os.path.join(
            parent, f".{base}.{os.getpid()}-{_HOST_ID}.{token}.tmp")
        try:
            os.mkdir(workspace, _NEW_FOLDER_MODE)
        except FileExistsError:
            continue
        return workspace


def _remove_stale(parent, base):
    """Removes the stale temporary folders of `<parent>/<base>`."""
    prefix = f".{base}."
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for name in names:
        match = name.startswith(prefix) and _TEMPORARY.fullmatch(name[len(prefix):])
        workspace = os.path.join(parent, name)
        try:
            if (match and not os.path.islink(workspace)
                    and os.path.isdir(workspace) and _is_stale(workspace, match)):
                _discard(workspace, os.path.join(parent, base))
        except OSError:  # removed meanwhile, by another writer's cleanup
            continue


def _discard(workspace, path):
    """Removes a temporary folder, restoring an earlier output moved into it.

    A replacement moves the earlier folder at `path` into its temporary
    folder first; when nothing stands at `path`, it is put back.
    """
    previous = os.path.join(workspace, os.path.basename(path) + _PREVIOUS)
    if os.path.lexists(previous) and not os.path.lexists(path):
        try:
            os.replace(previous, path)
        except OSError:
            return  # the only copy of the earlier output: keep it
    shutil.rmtree(workspace, ignore_errors=True)


def _is_stale(workspace, match):
    if match["host"] == _HOST_ID and os.name == "posix":
        return not _is_running(int(match["pid"]))
    return time.time() - _last_change(workspace) > STALE_SECONDS


def _is_running(pid):
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):  # not ours to signal, or no answer
        return True
    return True


def _last_change(folder):
    newest = os.lstat(folder).st_mtime
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            with contextlib.suppress(OSError):
                newest = max(newest, os.lstat(os.path.join(root, name)).st_mtime)
    return newest


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


def _finish(tmp, folder_mode):
    """Syncs the file or tree at `tmp` to disk, with the umask's modes.

    A writer may have replaced the file it was given by one of its own
    (safetensors' is 0600); every output gets the same modes regardless.
    """
    file_mode = folder_mode & _NEW_FILE_MODE
    if not os.path.isdir(tmp):
        _fsync_file(tmp)
        _chmod(tmp, file_mode)
        return
    for root, _, files in os.walk(tmp):
        for name in files:
            _fsync_file(os.path.join(root, name))
            _chmod(os.path.join(root, name), file_mode)
        _sync_folder(root)
        _chmod(root, folder_mode)


def _chmod(path, mode):
    if not os.path.islink(path):
        os.chmod(path, mode)


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
