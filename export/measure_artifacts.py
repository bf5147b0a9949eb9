"""The export table of `export/README.md`: format x quantization on MR.

Takes the folder of a `keras-lowrank finetune` run (`make demo` writes
`runs/demo`), rebuilds its classifier (base model + `adapters.safetensors`)
with its preprocessor, and exports it in every format and quantize mode with
`eval_data` = the run's whole test split (raw sentences) and
`calibration_data` = 256 training sentences. Each artifact is judged on its
accuracy in its own runtime (LiteRT, ONNX Runtime, MediaPipe for the
raw-text `.tflite`); an artifact more than 1.0 point below Keras is refused
by export, and listed with its figures. Then every artifact is timed at
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
    from keras_lowrank.exporters import AccuracyDropError
    from keras_lowrank.exporters import export

    rows = []
    table = os.path.join(args.out, "table.json")
    if args.latency_only or (args.only and os.path.exists(table)):
        with open(table, encoding="utf-8") as file:
            rows = [row for row in json.load(file)
                    if args.latency_only or row["name"] not in args.only]
    for format, quantize, metadata in ([] if args.latency_only else ROWS):
        name = _name(format, quantize, metadata)
        if args.only and name not in args.only:
            continue
        path = os.path.join(args.out, name.replace("/", "_") + (
            ".tflite" if format == "tflite" else ".onnx"))
        started = time.time()
        row = {"name": name, "path": path}
        try:
            report = export(
                model, path, format, quantize=quantize, metadata=metadata,
                calibration_data=calibration if quantize in ("int8", "int16x8") else None,
                eval_data=(test_texts, labels),
            )
            row.update(size=report.size_bytes, accuracy=report.accuracy,
                       keras=report.keras_accuracy, refused=False,
                       float_layers=len(report.float_layers),
                       precisions=report.precisions)
        except AccuracyDropError as error:
            row.update(accuracy=error.accuracy, keras=error.keras_accuracy,
                       refused=True)
        row["export_s"] = time.time() - started
        rows.append(row)
        print(json.dumps(row), flush=True)
    rows.sort(key=lambda row: [_name(*r) for r in ROWS].index(row["name"]))

    lengths = _token_lengths(model, test_texts)
    order = sorted(range(len(test_texts)), key=lengths.__getitem__)
    median, longest = order[len(order) // 2], order[-1]
    print(f"median test sentence: {lengths[median]} tokens; longest "
          f"{lengths[longest]} tokens (padded to {model.preprocessor.sequence_length})")
    _time_all(rows, model, test_texts[median], test_texts[longest], args.rounds)
    _print_table(rows, lengths[median], model.preprocessor.sequence_length)
    with open(os.path.join(args.out, "table.json"), "w") as file:
        json.dump(rows, file, indent=1)


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


def _name(format, quantize, metadata):
    return f"{format}{'+' + metadata if metadata else ''}/{quantize or 'float32'}"


def _print_table(rows, median_tokens, width):
    print(f"\n| artifact | size | accuracy (vs Keras) | batch 1, {median_tokens} "
          f"tokens (median) | batch 1, {width} tokens (max) |")
    print("|---|---|---|---|---|")
    for row in rows:
        size = f"{row['size'] / 1e6:.1f} MB" if "size" in row else "-"
        accuracy = (f"{row['accuracy']:.4f} ({100 * (row['accuracy'] - row['keras']):+.2f} pt)"
                    + (" refused" if row["refused"] else ""))
        median = f"{row['ms_median']:.1f} ms" if "ms_median" in row else "-"
        longest = f"{row['ms_max']:.1f} ms" if "ms_max" in row else "-"
        print(f"| {row['name']} | {size} | {accuracy} | {median} | {longest} |")
    print("\n(median of the timed calls; their minimum in table.json)")


if __name__ == "__main__":
    main()
