"""Atomic writes: a temporary sibling, then `os.replace`."""

import contextlib
import os
import shutil
import tempfile


@contextlib.contextmanager
def atomic_path(path, *, directory=False):
    """Yields a temporary path next to `path`; moves it into place on success.

    On any error the temporary file or folder is removed and whatever was at
    `path` before is left as it was.

    Example:
    ```python
    with atomic_path("adapter.safetensors") as tmp:
        safetensors.numpy.save_file(tensors, tmp)
    ```
    """
    path = os.fspath(path)
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    base = os.path.basename(path)
    if directory:
        tmp = tempfile.mkdtemp(prefix=f".{base}.", suffix=".tmp", dir=parent)
        os.rmdir(tmp)  # writers expect to create it themselves
    else:
        fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=".tmp", dir=parent)
        os.close(fd)
    try:
        yield tmp
        if directory:
            if os.path.isdir(path):
                old = tempfile.mkdtemp(prefix=f".{base}.", suffix=".old", dir=parent)
                os.rmdir(old)
                os.replace(path, old)
                os.replace(tmp, path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, path)
        else:
            os.replace(tmp, path)
    except BaseException:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        elif os.path.exists(tmp):
            os.remove(tmp)
        raise
