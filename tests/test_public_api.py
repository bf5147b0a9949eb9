"""The README's workflow through the names `import keras_lowrank as klr` gives."""

import keras
import numpy as np

import keras_lowrank as klr
from tests import tiny_models as tiny


def test_adapt_train_shrink_merge_compress_export(tmp_path):
    base = tiny.bert_classifier()
    model = klr.add_adapters(base, klr.LoRAConfig(rank=4, targets="all-linear"))
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(tiny.bert_inputs(batch=8), np.arange(8) % 2, epochs=2, verbose=0)
    x = tiny.bert_inputs(batch=4, seed=5)

    shrunk, shrink_report = klr.shrink_adapters(model, max_rank=2, sample_inputs=x)
    assert isinstance(shrink_report, klr.ShrinkReport)
    assert {row.rank_after for row in shrink_report.adapters} == {2}

    merged = klr.merge_adapters(model)
    assert klr.adapter_paths(merged) == []
    diff = np.abs(merged.predict(x, verbose=0) - model.predict(x, verbose=0)).max()
    assert diff < 1e-5

    compressed, compress_report = klr.compress(merged, targets="feedforward_*", rank=2)
    assert isinstance(compress_report, klr.CompressionReport)
    assert compress_report.total_params_after < compress_report.total_params_before

    report = klr.export(model, tmp_path / "model.tflite", "tflite")
    assert isinstance(report, klr.ExportReport)
    assert report.max_abs_diff <= 1e-4
    assert issubclass(klr.ExportVerificationError, RuntimeError)
    assert issubclass(klr.UnsupportedOpsError, ValueError)
