"""Measured study: the finetune defaults on a data set unlike MR.

BBC News (`make fetch`: 2,225 articles, 5 topics, ~380 words each, against
MR's 2 labels and ~20 words) with `keras-lowrank finetune`'s defaults
(`FinetuneOptions()` but the data file), next to full fine-tuning of the
same all-MiniLM-L6-v2 classifier on the same split, tokens, batches and
early stopping (every weight trainable, AdamW at `--full-learning-rate`).
Per seed and method: validation accuracy per epoch (still rising at the
last epoch means under-trained), the best epoch, test accuracy.

Run (after `make install fetch`), ~6 minutes per seed on 2 cores:
    .venv/bin/python examples/second_dataset.py --seeds 1337 1 2
Writes <out>/results.json and <out>/results.md.
"""

import argparse
import dataclasses
import json
import os
import statistics
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402

from keras_lowrank.data.fetch_bbc import bbc_news_path  # noqa: E402
from keras_lowrank.finetune import FinetuneOptions  # noqa: E402
from keras_lowrank.finetune import evaluation  # noqa: E402
from keras_lowrank.finetune import training  # noqa: E402

METHODS = ("LoRA (finetune defaults)", "full fine-tuning")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train", default=bbc_news_path(".cache"),
                        help="a CSV/TSV/JSONL file of text and label")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1337])
    parser.add_argument("--full-learning-rate", type=float, default=5e-5)
    parser.add_argument("--out", default="runs/second_dataset")
    parser.add_argument("--max-train-examples", type=int, default=None,
                        help="train on the first N only (smoke runs)")
    return parser.parse_args(argv)


def run(method, options, data, splits):
    """Trains one method on one seed's split; returns its row."""
    keras.utils.set_random_seed(options.seed)
    if method == METHODS[0]:
        model, _ = training.build_classifier(options, data.num_classes)
    else:
        model = training.load_base_classifier(options, data.num_classes)
    model.preprocessor = None  # fed token ids, as the finetune pipeline does
    start = time.perf_counter()
    history = training.fit(model, splits["train"], splits["validation"], options)
    seconds = time.perf_counter() - start
    result = evaluation.keras_accuracy(model, *splits["test"], options.batch_size)
    curve = history.get("val_accuracy", [])
    best = max(range(len(curve)), key=curve.__getitem__) + 1 if curve else None
    row = {
        "method": method, "seed": options.seed,
        "test_accuracy": result["accuracy"],
        "val_accuracy_per_epoch": curve,
        "best_epoch": best, "epochs_run": len(history["loss"]),
        # Under-trained: the last epoch's validation accuracy is the best.
        "still_rising_at_last_epoch": bool(curve) and best == len(curve)
                                      and len(curve) == options.epochs,
        "learning_rate": options.learning_rate, "epochs": options.epochs,
        "train_seconds": seconds,
    }
    print(f"  {method}, seed {options.seed}: test {row['test_accuracy']:.4f}, "
          f"val per epoch {[round(v, 4) for v in curve]}, best epoch {best} "
          f"({seconds:.0f} s)", flush=True)
    return row


def summarize(rows):
    summary = {}
    for method in METHODS:
        values = [r["test_accuracy"] for r in rows if r["method"] == method]
        if values:
            summary[method] = {"mean": statistics.fmean(values), "min": min(values),
                               "max": max(values), "seeds": len(values)}
    return summary


def markdown(summary, rows, meta):
    lines = [f"{meta['data']} ({meta['num_examples']}); seeds {meta['seeds']}.", "",
             "| method | test accuracy mean | min | max |", "|---|---|---|---|"]
    lines += [f"| {m} | {s['mean']:.4f} | {s['min']:.4f} | {s['max']:.4f} |"
              for m, s in summary.items()]
    lines += ["", "| method | seed | test accuracy | validation accuracy per epoch "
              "| best epoch |", "|---|---|---|---|---|"]
    lines += [f"| {r['method']} | {r['seed']} | {r['test_accuracy']:.4f} | "
              f"{', '.join(f'{v:.3f}' for v in r['val_accuracy_per_epoch'])} | "
              f"{r['best_epoch']} |" for r in rows]
    return "\n".join(lines) + "\n"


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    rows, meta = [], {"data": args.train, "seeds": args.seeds}
    for seed in args.seeds:
        options = FinetuneOptions(
            out=os.path.join(args.out, "unused"), train_files=(args.train,),
            seed=seed, verbose=0, export=(), phone_artifacts=(),
            max_train_examples=args.max_train_examples)
        data = training.load_data(options)
        meta["num_examples"] = data.num_examples
        model, _ = training.build_classifier(options, data.num_classes)
        splits = {
            "train": training.tokenize(model.preprocessor, data.train,
                                       options.max_train_examples),
            "validation": training.tokenize(model.preprocessor, data.validation),
            "test": training.tokenize(model.preprocessor, data.test),
        }
        del model
        rows.append(run(METHODS[0], options, data, splits))
        full = dataclasses.replace(options, learning_rate=args.full_learning_rate)
        rows.append(run(METHODS[1], full, data, splits))
        keras.backend.clear_session()
    summary = summarize(rows)
    with open(os.path.join(args.out, "results.json"), "w", encoding="utf-8") as file:
        json.dump({"meta": meta, "summary": summary, "runs": rows}, file, indent=1,
                  default=str)
    table = markdown(summary, rows, meta)
    with open(os.path.join(args.out, "results.md"), "w", encoding="utf-8") as file:
        file.write(table)
    print(table)


if __name__ == "__main__":
    main()
