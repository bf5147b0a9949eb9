"""Measured study: LoRA, DoRA and PiSSA at rank 8 on MR, over 3 seeds.

Each variant fine-tunes all-MiniLM-L6-v2 on the MR sentence-polarity data
with the `keras-lowrank finetune` recipe (`FinetuneOptions` defaults: rank 8,
alpha 16, dropout 0.1 on query and value, AdamW with warmup and cosine decay,
early stopping on validation accuracy), through the same pipeline pieces
(`keras_lowrank.finetune.training`, `evaluation`):

- LoRA: `LoRAConfig()`, A random, B zero.
- DoRA: `LoRAConfig(use_dora=True)`: a trainable magnitude per output unit.
- PiSSA: `LoRAConfig(init="pissa")`: A·B starts at W's top-8 singular part.

Per seed, the three variants see the same data split, the same tokenized
batches in the same order and the same initial head. Reported: test
accuracy (mean, min, max over the seeds), trainable parameters, and the
median training-step time of each variant relative to LoRA's, measured in
this one run (so on the same machine, under the same load): the same fixed
batch through each trained model's compiled train step.

Run (after `make install fetch`), ~40 minutes on 2 CPU cores:
    .venv/bin/python examples/compare_variants.py
A quick smoke run (not a measurement):
    .venv/bin/python examples/compare_variants.py --max-train-examples 64 \
        --max-eval-examples 32 --epochs 2 --seeds 1337
Writes <out>/results.json and <out>/results.md. `--help` lists the knobs.
"""

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import keras_hub  # noqa: E402

import keras_lowrank as klr  # noqa: E402
from keras_lowrank.finetune import FinetuneOptions  # noqa: E402
from keras_lowrank.finetune import evaluation  # noqa: E402
from keras_lowrank.finetune import training  # noqa: E402

# name -> the LoRAConfig fields that make the variant.
VARIANTS = {
    "LoRA": {},
    "DoRA": {"use_dora": True},
    "PiSSA": {"init": "pissa"},
}
# The seeds of FinetuneOptions' own measurement (its docstring).
SEEDS = (1337, 1, 2)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="runs/compare_variants")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=FinetuneOptions.epochs)
    parser.add_argument("--max-train-examples", type=int, default=None,
                        help="train on the first N examples only (smoke runs)")
    parser.add_argument("--max-eval-examples", type=int, default=None,
                        help="validate and test on the first N only (smoke runs)")
    parser.add_argument("--cache-dir", default=".cache")
    parser.add_argument("--timed-steps", type=int, default=20,
                        help="training steps timed per variant and seed")
    return parser.parse_args()


def time_steps(model, train, options, steps):
    """Median wall time of a training step, after `model` was trained.

    The same fixed batch (the first `batch_size` training rows, full
    sequence length) for every variant, through the train function `fit`
    compiled, after 3 warm-up steps. It runs after the test evaluation, so
    the steps it takes change no reported accuracy.
    """
    inputs, labels = train
    rows = min(options.batch_size, len(labels))
    batch = {name: value[:rows] for name, value in inputs.items()}
    for _ in range(3):
        model.train_on_batch(batch, labels[:rows])
    seconds = []
    for _ in range(steps):
        start = time.perf_counter()
        model.train_on_batch(batch, labels[:rows])
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def run_variant(name, fields, options, data, shared, timed_steps):
    """Trains one variant on one seed; returns its row of results."""
    keras.utils.set_random_seed(options.seed)
    base = keras_hub.models.BertTextClassifier.from_preset(
        klr.presets.minilm_path(), num_classes=data.num_classes)
    base.preprocessor.sequence_length = options.sequence_length
    config = klr.LoRAConfig(rank=options.rank, alpha=options.alpha,
                            dropout=options.dropout, targets=options.targets, **fields)
    model = klr.add_adapters(base, config)
    if "splits" not in shared:
        shared["splits"] = _tokenize(model.preprocessor, data, options)
    splits = shared["splits"]
    model.preprocessor = None  # fed token ids, as the finetune pipeline does
    start = time.perf_counter()
    history = training.fit(model, splits["train"], splits["validation"], options)
    seconds = time.perf_counter() - start
    result = evaluation.keras_accuracy(model, *splits["test"], options.batch_size)
    trainable, _ = klr.parameter_counts(model)
    step = time_steps(model, splits["train"], options, timed_steps)
    row = {
        "variant": name,
        "seed": options.seed,
        "test_accuracy": result["accuracy"],
        "test_examples": result["examples"],
        "epochs_run": len(history["loss"]),
        "best_val_accuracy": max(history.get("val_accuracy") or [None]),
        "trainable_params": int(trainable),
        "train_seconds": seconds,
        "timed_steps": timed_steps,
        "median_step_seconds": step,
    }
    print(f"  {name:6s} seed {options.seed}: test accuracy {row['test_accuracy']:.4f}, "
          f"{row['epochs_run']} epochs, median step "
          f"{_ms(step)} over {timed_steps} steps, "
          f"{trainable:,} trainable params", flush=True)
    return row


def _tokenize(preprocessor, data, options):
    return {
        "train": training.tokenize(preprocessor, data.train, options.max_train_examples),
        "validation": training.tokenize(
            preprocessor, data.validation, options.max_eval_examples),
        "test": training.tokenize(preprocessor, data.test, options.max_eval_examples),
    }


def summarize(rows):
    """Per variant: accuracy mean / min / max, params, step-time ratio to LoRA."""
    summary = {}
    lora_steps = {r["seed"]: r["median_step_seconds"] for r in rows if r["variant"] == "LoRA"}
    for name in VARIANTS:
        mine = [r for r in rows if r["variant"] == name]
        accuracies = [r["test_accuracy"] for r in mine]
        # Per seed, this variant's median step over LoRA's, then the mean.
        ratios = [r["median_step_seconds"] / lora_steps[r["seed"]] for r in mine
                  if r["median_step_seconds"] and lora_steps.get(r["seed"])]
        summary[name] = {
            "seeds": [r["seed"] for r in mine],
            "accuracy_mean": statistics.fmean(accuracies),
            "accuracy_min": min(accuracies),
            "accuracy_max": max(accuracies),
            "trainable_params": mine[0]["trainable_params"],
            "median_step_seconds": statistics.fmean(
                r["median_step_seconds"] for r in mine if r["median_step_seconds"]
            ) if any(r["median_step_seconds"] for r in mine) else None,
            "step_time_vs_lora": statistics.fmean(ratios) if ratios else None,
        }
    return summary


def markdown(summary, rows, meta):
    lines = [
        f"LoRA variants at rank {meta['rank']} on MR ({meta['model']}; "
        f"{meta['train_examples']} train / {meta['test_examples']} test "
        f"examples; seeds {meta['seeds']}).",
        "",
        "| variant | test accuracy mean | min | max | trainable params "
        "| median step | step time vs LoRA |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, s in summary.items():
        ratio = "n/a" if s["step_time_vs_lora"] is None else f"{s['step_time_vs_lora']:.2f}x"
        lines.append(
            f"| {name} | {s['accuracy_mean']:.4f} | {s['accuracy_min']:.4f} | "
            f"{s['accuracy_max']:.4f} | {s['trainable_params']:,} | "
            f"{_ms(s['median_step_seconds'])} | {ratio} |")
    lines += ["", "| variant | seed | test accuracy | epochs | median step |",
              "|---|---|---|---|---|"]
    lines += [f"| {r['variant']} | {r['seed']} | {r['test_accuracy']:.4f} | "
              f"{r['epochs_run']} | {_ms(r['median_step_seconds'])} |" for r in rows]
    return "\n".join(lines) + "\n"


def _ms(seconds):
    return "n/a" if seconds is None else f"{1000 * seconds:.1f} ms"


def _write(path, text):
    with open(path + ".tmp", "w") as file:
        file.write(text)
    os.replace(path + ".tmp", path)


def main():
    args = parse_args()
    os.makedirs(args.out, exist_ok=True)
    rows, meta = [], {"rank": args.rank, "seeds": args.seeds, "model": "all-MiniLM-L6-v2"}
    for seed in args.seeds:
        options = FinetuneOptions(
            out=os.path.join(args.out, "unused"), rank=args.rank, epochs=args.epochs,
            seed=seed, cache_dir=args.cache_dir, verbose=0, export=(),
            max_train_examples=args.max_train_examples,
            max_eval_examples=args.max_eval_examples,
        )
        data = training.load_data(options)
        print(f"seed {seed}: {data.num_examples}", flush=True)
        shared = {}  # the tokenized splits, shared by the variants of a seed
        for name, fields in VARIANTS.items():
            rows.append(run_variant(name, fields, options, data, shared,
                                    args.timed_steps))
        meta["train_examples"] = len(shared["splits"]["train"][1])
        meta["test_examples"] = len(shared["splits"]["test"][1])
    summary = summarize(rows)
    results = {"meta": meta, "summary": summary, "runs": rows,
               "recipe": {k: v for k, v in options.to_dict().items()
                          if k not in ("out", "seed", "export")}}
    _write(os.path.join(args.out, "results.json"), json.dumps(results, indent=2) + "\n")
    table = markdown(summary, rows, meta)
    _write(os.path.join(args.out, "results.md"), table)
    print()
    print(table)
    print(f"results -> {args.out}/results.json, {args.out}/results.md")


if __name__ == "__main__":
    main()
