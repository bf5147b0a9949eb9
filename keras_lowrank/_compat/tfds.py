"""Every private tensorflow-datasets attribute keras_lowrank relies on.

The test of each function is in `tests/compat/test_tfds.py`. Pinned:
tensorflow-datasets==4.9.10.
"""


def progress_bars_shown():
    """Whether tfds shows progress bars now (its private `tqdm_utils._active`),
    so that a quiet block can put the setting back as it was."""
    import tensorflow_datasets as tfds

    return getattr(tfds.core.utils.tqdm_utils, "_active", True)
