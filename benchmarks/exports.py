"""Child: each export of the merged model, judged on MR test sentences.

The merged classifier (random adapters, new head) gets MiniLM's
preprocessor at `train_sequence_length` tokens and is exported once per
name of `settings.exports` through `export/measure_artifacts.py`'s
`export_row` (the function behind `docs/export.md`'s table): written, run
in its own runtime (LiteRT, ONNX Runtime, MediaPipe's `TextClassifier` on
raw strings), with `eval_data` = the first `export_eval_examples` MR test
sentences and, for the calibrated modes, `calibration_data` = the first
`export_calibration_examples` training sentences. Recorded per export:
size, batch-1 latency at the median and the maximum token length (export's
own timing, on the first eval sentences), the runtime's accuracy next to
Keras' on the same sentences, and for the MediaPipe artifact how many
labels equal Keras'. The head is untrained, so accuracy is near chance:
what counts is how far each runtime is from Keras. An artifact export
refuses for its accuracy is recorded as `refused`, with both accuracies.
"""

import os
import shutil

from benchmarks import child
from benchmarks import keras_setup
from benchmarks.latency import merged_with_random_adapters

# name: (format, quantize, metadata), in table order.
FORMATS = {
    "tflite": ("tflite", None, None),
    "tflite_dynamic": ("tflite", "dynamic", None),
    "tflite_int8": ("tflite", "int8", None),
    "tflite_int16x8": ("tflite", "int16x8", None),
    "tflite_text_classifier": ("tflite", None, "text_classifier"),
    "onnx": ("onnx", None, None),
    "onnx_int8": ("onnx", "int8", None),
}
_EXTENSIONS = {"tflite": ".tflite", "onnx": ".onnx"}


def measure(settings, config, work):
    import keras

    import keras_lowrank as klr

    try:
        from export.measure_artifacts import export_row
    except ImportError as error:
        return {"skipped": f"keras_lowrank.exporters unavailable: {error}"}
    unknown = sorted(set(settings.exports) - set(FORMATS))
    if unknown:
        raise ValueError(
            f"Unrecognized exports {unknown}. Supported exports are: {list(FORMATS)}"
        )
    keras.utils.set_random_seed(settings.seed)
    base = keras_setup.build_classifier("base", settings.rank)
    merged = merged_with_random_adapters(klr.add_adapters(base, rank=settings.rank),
                                         settings.seed)
    merged.preprocessor = keras_setup.preprocessor(settings.train_sequence_length)
    eval_data, calibration = _sentences(settings)
    folder = os.path.join(work, "exports")
    os.makedirs(folder, exist_ok=True)
    results = {}
    try:
        for name in settings.exports:
            format, quantize, metadata = FORMATS[name]
            path = os.path.join(folder, name + _EXTENSIONS[format])
            try:
                row = export_row(merged, path, format, quantize, metadata,
                                 eval_data, calibration)
            except Exception as error:  # one failing format must not hide the others
                results[name] = {"error": f"{type(error).__name__}: {error}"[:2000]}
                continue
            row.pop("path")
            results[name] = row
    finally:
        shutil.rmtree(folder, ignore_errors=True)  # ~90 MB per artifact
    return {
        "formats": results,
        "sequence_length": settings.train_sequence_length,
        "eval_examples": len(eval_data[0]),
        "calibration_examples": len(calibration),
    }


def _sentences(settings):
    """`((test texts, labels), calibration texts)`: the first MR sentences."""
    from keras_lowrank.data import load_mr_polarity

    data = load_mr_polarity(cache_dir=".cache")
    test = list(data.test.take(settings.export_eval_examples).as_numpy_iterator())
    train = data.train.take(settings.export_calibration_examples)
    texts = [text.decode("utf-8") for text, _ in test]
    labels = [int(label) for _, label in test]
    calibration = [text.decode("utf-8") for text, _ in train.as_numpy_iterator()]
    return (texts, labels), calibration


if __name__ == "__main__":
    child.main(measure)
