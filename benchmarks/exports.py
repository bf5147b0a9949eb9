"""Child: size and runtime latency of each export of the merged model.

Through `keras_lowrank.exporters.export`, which writes the artifact, runs it
in its own runtime (LiteRT, ONNX Runtime) at batch 1 and 8, checks it
against Keras and times batch 1. The sample rows are those of the fixed
batch, so the sequence length is the bench's.
"""

import os
import shutil
import time

from benchmarks import child
from benchmarks import keras_setup
from benchmarks.latency import merged_with_random_adapters

_FORMATS = {
    "tflite": ("tflite", None, "model.tflite"),
    "tflite_dynamic": ("tflite", "dynamic", "model_dynamic.tflite"),
    "onnx": ("onnx", None, "model.onnx"),
}


def measure(settings, config, work):
    import keras

    import keras_lowrank as klr

    try:
        from keras_lowrank.exporters import export
    except ImportError as error:
        return {"skipped": f"keras_lowrank.exporters unavailable: {error}"}
    keras.utils.set_random_seed(settings.seed)
    base = keras_setup.build_classifier("base", settings.rank)
    merged = merged_with_random_adapters(klr.add_adapters(base, rank=settings.rank),
                                 settings.seed)
    sample, _ = keras_setup.load_batch(work, rows=8)
    folder = os.path.join(work, "exports")
    os.makedirs(folder, exist_ok=True)
    results = {}
    try:
        for name in settings.exports:
            format, quantize, filename = _FORMATS[name]
            start = time.perf_counter()
            try:
                report = export(merged, os.path.join(folder, filename), format,
                                quantize=quantize, sample_inputs=sample)
            except Exception as error:  # one failing format must not hide the others
                results[name] = {"error": f"{type(error).__name__}: {error}"[:2000]}
                continue
            results[name] = {
                "size_bytes": report.size_bytes,
                "latency_ms_batch_1": report.latency_ms,
                "max_abs_diff": report.max_abs_diff,
                "tolerance": report.tolerance,
                "runtime": report.runtime,
                "num_op_types": len(report.ops),
                "export_s": time.perf_counter() - start,
            }
    finally:
        shutil.rmtree(folder, ignore_errors=True)  # ~90 MB per artifact
    return {"formats": results, "sequence_length": int(sample["token_ids"].shape[1])}


if __name__ == "__main__":
    child.main(measure)
