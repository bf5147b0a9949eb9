"""The export table of `docs/export.md`: format x quantization on MR.

Takes the folder of a `keras-lowrank finetune` run (`make demo` writes
`runs/demo`), rebuilds its classifier (base model + `adapters.safetensors`)
with its preprocessor, and exports it in every format and quantize mode with
`eval_data` = the run's whole test split (raw sentences) and
`calibration_data` = 256 training sentences. Each artifact is judged on its
accuracy in its own runtime (LiteRT, ONNX Runtime, MediaPipe for the
raw-text `.tflite`); an artifact more than 1.0 point below Keras is refused
by export, and listed with its figures. For the MediaPipe rows, export also
counts the test sentences whose label equals Keras' (a float32 one must
reach 99.5%). Then every artifact is timed at
batch 1 on the test sentence of median token length and on one of the
maximum length: blocks of warm calls, the artifacts in turn, five times
over (one thread each for LiteRT and ONNX Runtime), so that load on a
shared machine hits them alike.

Usage (after `make demo`), about 25 minutes on 2 cores:
    KERAS_BACKEND=tensorflow .venv/bin/python export/measure_artifacts.py \\
        --run runs/demo --out /tmp/artifacts
    # re-time the same artifacts (a quieter moment, more rounds):
    KERAS_BACKEND=tensorflow .venv/bin/python export/measure_artifacts.py \\
        --run runs/demo --out /tmp/artifacts --latency-only --rounds 100

`export_row` (one artifact exported and judged: its figures as a dict) is
shared with `make bench`'s export section (`benchmarks/exports.py`).
"""

import argparse
import json
import os
import statistics
import time

ROWS = [
    # (format, quantize, metadata)
    ("tflite", None, None),
    ("tflite", "dynamic", None),
    ("tflite", "int8", None),
    ("tflite", "int16x8", None),
    ("tflite", None, "text_classifier"),
    ("tflite", "int8", "text_classifier"),
    ("onnx", None, None),
    ("onnx", "dynamic", None),
    ("onnx", "int8", None),
]
CALIBRATION_SENTENCES = 256
LATENCY_ROUNDS = 40
BLOCKS = 5
WARM_UP = 3


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", default="runs/demo", help="a finetune run folder")
    parser.add_argument("--out", required=True, help="folder for the artifacts")
    parser.add_argument("--only", nargs="*", help="row names to run, e.g. tflite/int8")
    parser.add_argument("--latency-only", action="store_true",
                        help="re-time the artifacts of an earlier run in --out")
    parser.add_argument("--rounds", type=int, default=LATENCY_ROUNDS,
                        help="timed calls per artifact and length")
    args = parser.parse_args()
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.makedirs(args.out, exist_ok=True)

    model, test_texts, labels, calibration = _demo_classifier(args.run)
    rows = []
    table = os.path.join(args.out, "table.json")
    if args.latency_only or (args.only and os.path.exists(table)):
        with open(table, encoding="utf-8") as file:
            rows = [row for row in json.load(file)
                    if args.latency_only or row["name"] not in args.only]
    for format, quantize, metadata in ([] if args.latency_only else ROWS):
        name = row_name(format, quantize, metadata)
        if args.only and name not in args.only:
            continue
        path = os.path.join(args.out, name.replace("/", "_") + (
            ".tflite" if format == "tflite" else ".onnx"))
        row = export_row(model, path, format, quantize, metadata,
                         (test_texts, labels), calibration)
        rows.append(row)
        print(json.dumps(row), flush=True)
    rows.sort(key=lambda row: [row_name(*r) for r in ROWS].index(row["name"]))

    lengths = _token_lengths(model, test_texts)
    order = sorted(range(len(test_texts)), key=lengths.__getitem__)
    median, longest = order[len(order) // 2], order[-1]
    print(f"median test sentence: {lengths[median]} tokens; longest "
          f"{lengths[longest]} tokens (padded to {model.preprocessor.sequence_length})")
    _time_all(rows, model, test_texts[median], test_texts[longest], args.rounds)
    _print_table(rows, lengths[median], model.preprocessor.sequence_length)
    with open(os.path.join(args.out, "table.json"), "w") as file:
        json.dump(rows, file, indent=1)


def export_row(model, path, format, quantize, metadata, eval_data, calibration):
    """Exports one artifact of the table, judged on `eval_data`; its figures.

    Args:
        model: a keras-hub classifier with its preprocessor.
        path: str. Where to write the artifact.
        format, quantize, metadata: one of `ROWS`.
        eval_data: `(texts, labels)`: raw sentences and integer labels.
        calibration: list of str. Sentences for the calibrated modes.

    Returns:
        `{"name", "path", "accuracy", "keras", "refused", "export_s", ...}`:
        with `refused` True (and the two accuracies) when export refused
        the artifact for its accuracy; else also `size`, `float_layers`,
        `precisions`, `latency_by_length` (export's batch-1 timing at the
        median and maximum token length), `max_abs_diff`, `runtime`, and
        for a MediaPipe artifact `labels_equal` of `eval_examples` and
        `max_score_diff` on them.
    """
    from keras_lowrank.exporters import AccuracyDropError
    from keras_lowrank.exporters import export
    from keras_lowrank.exporters import get_format

    calibrated = quantize in get_format(format).calibrated_modes
    started = time.time()
    row = {"name": row_name(format, quantize, metadata), "path": path}
    try:
        report = export(
            model, path, format, quantize=quantize, metadata=metadata,
            calibration_data=calibration if calibrated else None,
            eval_data=eval_data,
        )
        row.update(
            size=report.size_bytes, accuracy=report.accuracy,
            keras=report.keras_accuracy, refused=False,
            float_layers=len(report.float_layers), precisions=report.precisions,
            latency_by_length=report.latency_by_length,
            max_abs_diff=report.max_abs_diff, runtime=report.runtime,
            eval_examples=report.eval_examples,
            labels_equal=report.eval_labels_equal,
            max_score_diff=report.eval_max_score_diff,
        )
    except AccuracyDropError as error:
        row.update(accuracy=error.accuracy, keras=error.keras_accuracy,
                   refused=True)
    row["export_s"] = time.time() - started
    return row


def row_name(format, quantize, metadata):
    """`tflite/int8`, `tflite+text_classifier/float32`, ..."""
    return f"{format}{'+' + metadata if metadata else ''}/{quantize or 'float32'}"


def _demo_classifier(run_folder):
    import keras_lowrank as klr
    from keras_lowrank.finetune import training
    from keras_lowrank.finetune.options import FinetuneOptions

    with open(os.path.join(run_folder, "report.json"), encoding="utf-8") as file:
        run = json.load(file)
    options = FinetuneOptions(**{
        key: tuple(value) if isinstance(value, list) else value
        for key, value in run["options"].items()
    })
    data = training.load_data(options)
    _, base = training.build_classifier(options, len(run["label_names"]))
    model = klr.load_adapters(base, os.path.join(run_folder, "adapters.safetensors"))
    model.label_names = list(run["label_names"])
    test = list(data.test.as_numpy_iterator())
    if options.max_eval_examples:
        test = test[: options.max_eval_examples]
    texts = [text.decode("utf-8") for text, _ in test]
    labels = [int(label) for _, label in test]
    calibration = [
        text.decode("utf-8")
        for text, _ in data.train.take(CALIBRATION_SENTENCES).as_numpy_iterator()
    ]
    return model, texts, labels, calibration


def _token_lengths(model, texts):
    from keras_lowrank.exporters.text_inputs import token_lengths
    from keras_lowrank.exporters.text_inputs import tokenize

    return [int(n) for n in token_lengths(tokenize(model, texts))]


def _time_all(rows, model, median_text, longest_text, rounds):
    """Batch-1 milliseconds at both lengths, artifacts timed in turn."""
    import numpy as np

    from keras_lowrank.exporters.mediapipe_text import MediaPipeClassifier
    from keras_lowrank.exporters.text_inputs import tokenize
    from keras_lowrank.exporters.text_inputs import trimmed_row

    flat = tokenize(model, [median_text, longest_text])
    width = flat["token_ids"].shape[1]
    median_tokens = int(flat["padding_mask"][0].sum())
    calls = {}
    for row in rows:
        if row["refused"]:
            continue
        if "text_classifier" in row["name"]:
            classifier = MediaPipeClassifier(row["path"])
            row["_close"] = classifier.close
            calls[row["name"]] = {
                "median": lambda c=classifier: c.classify(median_text),
                "max": lambda c=classifier: c.classify(longest_text),
            }
            continue
        run = _single_thread_runner(row["path"])
        inputs = {
            "median": trimmed_row(flat, 0, median_tokens),
            "max": trimmed_row(flat, 1, width),
        }
        calls[row["name"]] = {
            key: (lambda r=run, x=value: r(x)) for key, value in inputs.items()
        }
    # Blocks of calls per artifact and length, warm (its weights back in the
    # caches after the other artifacts ran), the blocks of all artifacts in
    # turn, `rounds` times: load on a shared machine hits them alike.
    times = {(name, key): [] for name in calls for key in ("median", "max")}
    for _ in range(BLOCKS):
        for name, by_key in calls.items():
            for key, call in by_key.items():
                for _ in range(WARM_UP):
                    call()
                for _ in range(max(1, rounds // BLOCKS)):
                    start = time.perf_counter()
                    call()
                    times[name, key].append((time.perf_counter() - start) * 1000)
    for row in rows:
        for key in ("median", "max"):
            values = times.get((row["name"], key))
            if values:
                row[f"ms_{key}"] = statistics.median(values)
                row[f"ms_{key}_min"] = float(np.min(values))
        if "_close" in row:
            row.pop("_close")()


def _single_thread_runner(path):
    if path.endswith(".tflite"):
        from keras_lowrank.exporters.tflite import TFLiteRunner

        return TFLiteRunner(path, num_threads=1)
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(
        path, options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return lambda inputs: session.run(names, inputs)


def labels_equal(row):
    """`799/800`: the eval sentences whose label equals Keras' (MediaPipe
    rows), else `-`."""
    if row.get("labels_equal") is None:
        return "-"
    return f"{row['labels_equal']}/{row['eval_examples']}"


def _print_table(rows, median_tokens, width):
    print(f"\n| artifact | size | accuracy (vs Keras) | labels = Keras' | batch 1, "
          f"{median_tokens} tokens (median) | batch 1, {width} tokens (max) |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        size = f"{row['size'] / 1e6:.1f} MB" if "size" in row else "-"
        accuracy = (f"{row['accuracy']:.4f} ({100 * (row['accuracy'] - row['keras']):+.2f} pt)"
                    + (" refused" if row["refused"] else ""))
        median = f"{row['ms_median']:.1f} ms" if "ms_median" in row else "-"
        longest = f"{row['ms_max']:.1f} ms" if "ms_max" in row else "-"
        print(f"| {row['name']} | {size} | {accuracy} | {labels_equal(row)} | "
              f"{median} | {longest} |")
    print("\n(median of the timed calls; their minimum in table.json)")


if __name__ == "__main__":
    main()
