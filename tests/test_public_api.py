"""The README's workflow through the names `import keras_lowrank as klr` gives."""

import keras
import numpy as np

import keras_lowrank as klr
from tests import tiny_models as tiny
from tests.exporters.helpers import run_tflite

# The tiny BERT (hidden 16, feed-forward 32, 2 blocks): rank-4 adapters on
# all 13 linear layers (8 of 16x16 in the attention, 4 of 16x32 or 32x16 in
# the feed-forward, the 16x16 pooler), and the new head (16·2 + 2).
ADAPTER_PARAMS = 9 * 4 * (16 + 16) + 4 * 4 * (16 + 32)
HEAD_PARAMS = 16 * 2 + 2
# Feed-forward kernels with their biases: (16x32 + 32) + (32x16 + 16) a block;
# at rank 2: 2·(16 + 32) + 32 and 2·(32 + 16) + 16.
FEEDFORWARD_PARAMS = 2 * ((16 * 32 + 32) + (32 * 16 + 16))
FEEDFORWARD_PARAMS_RANK_2 = 2 * ((2 * 48 + 32) + (2 * 48 + 16))


def test_adapt_train_shrink_merge_compress_export(tmp_path):
    base = tiny.bert_classifier()
    model = klr.add_adapters(base, klr.LoRAConfig(rank=4, targets="all-linear"))
    assert len(klr.adapter_paths(model)) == 13
    assert klr.parameter_counts(model) == (
        ADAPTER_PARAMS + HEAD_PARAMS, base.count_params() + ADAPTER_PARAMS)
    frozen = {w.path: w.numpy().copy() for w in model.non_trainable_weights}
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(tiny.bert_inputs(batch=8), np.arange(8) % 2, epochs=2, verbose=0)
    for w in model.non_trainable_weights:  # training moved the adapters only
        np.testing.assert_array_equal(w.numpy(), frozen[w.path])
    x = tiny.bert_inputs(batch=4, seed=5)
    outputs = model.predict(x, verbose=0)

    shrunk, shrink_report = klr.shrink_adapters(model, max_rank=2, sample_inputs=x)
    assert isinstance(shrink_report, klr.ShrinkReport)
    assert {row.rank_after for row in shrink_report.adapters} == {2}
    assert len(shrink_report.adapters) == 13
    assert (shrink_report.params_before, shrink_report.params_after) == (
        ADAPTER_PARAMS, ADAPTER_PARAMS // 2)
    for row in shrink_report.adapters:
        assert abs(row.energy - (1 - row.relative_error**2)) < 1e-6, row.path
    # The report's difference is the shrunk model's, measured 8.3e-4.
    shrunk_diff = np.abs(shrunk.predict(x, verbose=0) - outputs).max()
    assert abs(shrunk_diff - shrink_report.max_abs_diff) < 1e-6
    assert 0 < shrunk_diff < 1e-2

    merged = klr.merge_adapters(model)
    assert klr.adapter_paths(merged) == []
    assert merged.count_params() == base.count_params()
    diff = np.abs(merged.predict(x, verbose=0) - outputs).max()
    assert diff < 1e-5

    compressed, compress_report = klr.compress(merged, targets="feedforward_*", rank=2)
    assert isinstance(compress_report, klr.CompressionReport)
    assert set(compress_report.ranks.values()) == {2} and len(compress_report.ranks) == 4
    assert compress_report.targeted_params_before == FEEDFORWARD_PARAMS == 2144
    assert compress_report.targeted_params_after == FEEDFORWARD_PARAMS_RANK_2 == 480
    assert compress_report.total_params_before == merged.count_params()
    assert compress_report.total_params_after == compressed.count_params() == (
        merged.count_params() - FEEDFORWARD_PARAMS + FEEDFORWARD_PARAMS_RANK_2)
    # Measured 1.1e-4: rank 2 of 16 keeps the tiny model's outputs close.
    compressed_diff = np.abs(compressed.predict(x, verbose=0) - outputs).max()
    assert 0 < compressed_diff < 0.05

    report = klr.export(model, tmp_path / "model.tflite", "tflite")
    assert isinstance(report, klr.ExportReport)
    assert report.max_abs_diff <= 1e-4
    # Checked here too, in LiteRT on this test's own inputs.
    (litert,) = run_tflite(report.path, x).values()
    assert np.abs(np.asarray(litert) - outputs).max() <= 1e-4
    assert issubclass(klr.ExportVerificationError, RuntimeError)
    assert issubclass(klr.UnsupportedOpsError, ValueError)
