"""One test per function of `keras_lowrank._compat.tfds`."""

import tensorflow_datasets as tfds

from keras_lowrank._compat import tfds as tfds_compat


def test_progress_bars_shown_reads_back_the_setting():
    before = tfds_compat.progress_bars_shown()
    assert before is tfds.core.utils.tqdm_utils._active
    try:
        tfds.display_progress_bar(False)
        assert tfds.core.utils.tqdm_utils._active is False
        assert tfds_compat.progress_bars_shown() is False
        tfds.display_progress_bar(True)
        assert tfds_compat.progress_bars_shown() is True
    finally:
        tfds.display_progress_bar(before)
