"""What each export mode costs in accuracy, on a fine-tuned classifier.

Takes the folder of a `keras-lowrank finetune` run (`make demo` writes
`runs/demo`), rebuilds its classifier from the base model and the run's
`adapters.safetensors`, tokenizes the run's own test split (same data, seed
and sequence length, from its `report.json`), and exports the classifier as
TFLite in every quantize mode and as ONNX. Each artifact runs the whole test
split in its own runtime; the table gives its test accuracy, the predictions
that flip against Keras, and the logit differences. Full-integer int8 is
calibrated on 256 training sentences.

Usage (after `make demo`), about 3 minutes on 2 cores:
    KERAS_BACKEND=tensorflow .venv/bin/python export/measure_quantize_accuracy.py \
        --run runs/demo --out /tmp/quantize
"""

import argparse
import json
import os

MODES = [
    ("tflite", None),
    ("tflite", "float16"),
    ("tflite", "dynamic"),
    ("tflite", "int8"),
    ("onnx", None),
]
CALIBRATION_ROWS = 256
CALIBRATION_BATCH = 8
# Every artifact is kept and measured, however far it is from Keras.
NO_BOUND = 1e6


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", default="runs/demo", help="a finetune run folder")
    parser.add_argument("--out", required=True, help="folder for the artifacts")
    args = parser.parse_args()
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")

    import numpy as np

    import keras_lowrank as klr
    from keras_lowrank.exporters import export
    from keras_lowrank.finetune import evaluation
    from keras_lowrank.finetune import training
    from keras_lowrank.finetune.options import FinetuneOptions

    with open(os.path.join(args.run, "report.json"), encoding="utf-8") as file:
        run = json.load(file)
    options = FinetuneOptions(**{
        key: tuple(value) if isinstance(value, list) else value
        for key, value in run["options"].items()
    })
    data = training.load_data(options)
    _, base = training.build_classifier(options, len(run["label_names"]))
    model = klr.load_adapters(base, os.path.join(args.run, "adapters.safetensors"))
    test_inputs, labels = training.tokenize(
        model.preprocessor, data.test, options.max_eval_examples)
    calibration_inputs, _ = training.tokenize(
        model.preprocessor, data.train, CALIBRATION_ROWS)
    model.preprocessor = None  # fed token ids from here on

    reference = model.predict(test_inputs, batch_size=100, verbose=0)
    keras_accuracy = float(np.mean(reference.argmax(-1) == labels))
    os.makedirs(args.out, exist_ok=True)
    rows = []
    for format, quantize in MODES:
        extra = {}
        if quantize == "int8":
            extra["representative_data"] = [
                {k: v[i:i + CALIBRATION_BATCH] for k, v in calibration_inputs.items()}
                for i in range(0, CALIBRATION_ROWS, CALIBRATION_BATCH)
            ]
        path = os.path.join(args.out, f"classifier_{quantize or 'float32'}.{format}")
        report = export(model, path, format, quantize=quantize, atol=NO_BOUND,
                        sample_inputs={k: v[:8] for k, v in test_inputs.items()},
                        **extra)
        predict = evaluation.artifact_predictor(format, path)
        logits = np.concatenate([
            predict({k: v[i:i + 100] for k, v in test_inputs.items()})
            for i in range(0, len(labels), 100)
        ])
        diff = np.abs(logits - reference).max(axis=-1)
        rows.append({
            "artifact": f"{format} ({quantize or 'float32'})",
            "size_mb": report.size_bytes / 1e6,
            "accuracy": float(np.mean(logits.argmax(-1) == labels)),
            "flips": int(np.sum(logits.argmax(-1) != reference.argmax(-1))),
            "max_diff": float(diff.max()),
            "median_diff": float(np.median(diff)),
            "latency_ms": report.latency_ms,
        })
        print(rows[-1], flush=True)

    print(f"\nKeras: test accuracy {keras_accuracy:.4f} on {len(labels)} sentences; "
          f"largest |logit| {np.abs(reference).max():.2f}\n")
    print("| artifact | size | test accuracy | vs Keras | flipped predictions "
          "| max / median abs logit diff | latency (batch 1) |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['artifact']} | {row['size_mb']:.1f} MB | {row['accuracy']:.4f} "
              f"| {100 * (row['accuracy'] - keras_accuracy):+.2f} pt "
              f"| {row['flips']} of {len(labels)} "
              f"| {row['max_diff']:.2g} / {row['median_diff']:.2g} "
              f"| {row['latency_ms']:.1f} ms |")


if __name__ == "__main__":
    main()
