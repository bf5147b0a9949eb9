"""Length-trimmed batches: every row once, and the same logits as untrimmed."""

import numpy as np
import tensorflow as tf

from keras_lowrank.finetune import batching
from tests import tiny_models


def _inputs(lengths, width=64):
    lengths = np.asarray(lengths)
    mask = (np.arange(width)[None, :] < lengths[:, None]).astype("int32")
    tokens = (np.arange(1, width + 1)[None, :] * mask).astype("int32")
    return {"token_ids": tokens, "segment_ids": np.zeros_like(mask), "padding_mask": mask}


def test_length_sorted_batches_cover_every_row_once_trimmed_to_multiples_of_8():
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 60, size=101)
    inputs, labels = _inputs(lengths), np.arange(101)
    seen, widths = [], []
    for batch, batch_labels in batching.length_sorted_batches(inputs, labels, 16):
        width = batch["token_ids"].shape[1]
        assert width % batching.LENGTH_MULTIPLE == 0
        assert width >= batch["padding_mask"].sum(axis=1).max()
        assert width - batch["padding_mask"].sum(axis=1).max() < batching.LENGTH_MULTIPLE
        np.testing.assert_array_equal(batch["padding_mask"].sum(axis=1), lengths[batch_labels])
        seen += list(batch_labels)
        widths.append(width)
    assert sorted(seen) == list(range(101))
    assert widths == sorted(widths)  # sorted by length
    assert np.mean(widths) < 48  # near the mean length, far below 64


def test_epoch_batches_are_a_partition_reshuffled_each_epoch():
    lengths = np.random.default_rng(1).integers(1, 64, size=1000)
    rng = np.random.default_rng(7)
    first = batching.epoch_batches(lengths, 32, rng)
    second = batching.epoch_batches(lengths, 32, rng)
    for batches in (first, second):
        rows = np.concatenate(batches)
        assert sorted(rows) == list(range(1000))
        assert len(batches) == 32  # ceil(1000 / 32)
        assert sum(len(b) < 32 for b in batches) == 1
    assert [list(b) for b in first] != [list(b) for b in second]


def test_training_dataset_has_known_cardinality_and_dynamic_shapes():
    inputs = _inputs(np.random.default_rng(2).integers(2, 30, size=70))
    labels = np.arange(70, dtype="int64") % 2
    dataset = batching.training_dataset(inputs, labels, 32, seed=0)
    assert int(dataset.cardinality()) == 3
    assert dataset.element_spec[0]["token_ids"].shape.as_list() == [None, None]
    epoch_1 = [y.numpy().tolist() for _, y in dataset]
    assert sum(len(y) for y in epoch_1) == 70
    assert all(x["token_ids"].shape[1] <= 32 for x, _ in dataset)
    assert isinstance(dataset, tf.data.Dataset)


def test_trimming_padding_leaves_bert_logits_unchanged():
    model = tiny_models.bert_classifier()
    inputs = tiny_models.bert_inputs(batch=4)  # 9 tokens of 12, then padding
    full = np.asarray(model.predict_on_batch(inputs))
    trimmed = np.asarray(model.predict_on_batch(batching.trim(inputs, np.arange(4), 9)))
    np.testing.assert_allclose(trimmed, full, atol=1e-5)
