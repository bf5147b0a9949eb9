"""`make demo` over several seeds: the spread a single run hides.

Runs the demo's command (`keras-lowrank finetune`, every default) once per
seed, each in its own process, into `<out>/seed-<n>/`, and writes the
spread of its figures (mean, min, max) to `<out>/summary.json` and
`<out>/summary.md`. Each seed draws its own data split, initial adapters,
shuffling and dropout, so the spread is the one a user sees between runs;
a run with a given seed repeats its figures on the same machine.

Run (after `make install fetch`), about 8 minutes per seed on 2 cores:
    .venv/bin/python examples/demo_seeds.py
`--seeds 1337 1 2` (the default), `--out runs/demo_seeds`; extra arguments
after `--` go to `keras-lowrank finetune` as they are, e.g.
`-- --no-phone-artifacts`.

`--variant NAME "ARGS"` (repeatable) compares set-ups over the same seeds:
each seed runs every variant in turn (its ARGS added to the common ones)
into `<out>/<name>/seed-<n>/`, so load on the machine falls on all of them
alike, and the summary gives each variant's spread, e.g. a float base
against int8 and int4 (docs/quantized_base.md):
    .venv/bin/python examples/demo_seeds.py --seeds 0 1 2 \
        --variant float "" --variant int8 "--base-quantization int8" \
        -- --task causal-lm --export none
"""

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The figures of report.json the summary spreads, and their labels.
FIGURES = {
    "test_accuracy": "test accuracy (Keras)",
    "tflite_test_accuracy": "test accuracy (LiteRT dynamic int8)",
    "onnx_test_accuracy": "test accuracy (ONNX)",
    "text_classifier_test_accuracy": "test accuracy (MediaPipe, raw text)",
    "int8_test_accuracy": "test accuracy (LiteRT full integer)",
    "best_val_accuracy": "best validation accuracy",
    "best_epoch": "best epoch",
    "epochs_run": "epochs run",
    "train_seconds": "training seconds",
    "step_seconds": "seconds a training step",
    "test_accuracy_before": "test accuracy before training",
    "trainable_params": "trainable parameters",
    "weight_bytes": "bytes of weights held",
    "weight_bytes_ratio": "weights held / float base",
    "peak_rss_bytes": "peak RSS, bytes",
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1337, 1, 2])
    parser.add_argument("--out", default="runs/demo_seeds")
    parser.add_argument("--variant", nargs=2, action="append", metavar=("NAME", "ARGS"),
                        help="a set-up to compare: its name, and its finetune "
                             "arguments as one string (repeatable)")
    parser.add_argument("finetune_args", nargs=argparse.REMAINDER,
                        help="after --: more arguments of keras-lowrank finetune")
    args = parser.parse_args(argv)
    if args.finetune_args[:1] == ["--"]:
        args.finetune_args = args.finetune_args[1:]
    return args


def run_seed(seed, out, extra):
    """One `finetune` run in `<out>/seed-<seed>/`; its `figures`."""
    folder = os.path.join(out, f"seed-{seed}")
    command = [sys.executable, "-m", "keras_lowrank.cli.main", "finetune",
               "--seed", str(seed), "--out", folder, *extra]
    print("$", " ".join(command), flush=True)
    subprocess.run(command, cwd=ROOT, check=True)
    with open(os.path.join(folder, "report.json"), encoding="utf-8") as file:
        return figures(json.load(file))


def figures(report):
    """The `FIGURES` of one run's report (None where it has none)."""
    found = {key: report.get(key) for key in FIGURES}
    if report.get("steps_run"):  # a causal-LM run counts its steps
        found["step_seconds"] = report["train_seconds"] / report["steps_run"]
    if report.get("weight_bytes") and report.get("weight_bytes_float_base"):
        found["weight_bytes_ratio"] = report["weight_bytes"] / report["weight_bytes_float_base"]
    return found


def spread(runs):
    """`{figure: {"mean", "min", "max", "values"}}` over the runs."""
    result = {}
    for key in FIGURES:
        values = [run[key] for run in runs if run[key] is not None]
        if values:
            result[key] = {"mean": statistics.fmean(values), "min": min(values),
                           "max": max(values), "values": values}
    return result


def markdown(seeds, summary):
    lines = [f"`make demo` over seeds {', '.join(map(str, seeds))}:", "",
             "| figure | mean | min | max |", "|---|---|---|---|"]
    for key, label in FIGURES.items():
        if key in summary:
            s = summary[key]
            digits = 4 if "accuracy" in key or "ratio" in key else (
                2 if key == "step_seconds" else 1)
            lines.append(f"| {label} | {s['mean']:.{digits}f} | "
                         f"{s['min']:.{digits}f} | {s['max']:.{digits}f} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    variants = args.variant or [(None, "")]
    runs = {name: [] for name, _ in variants}
    for seed in args.seeds:  # every variant of a seed before the next seed
        for name, extra in variants:
            out = args.out if name is None else os.path.join(args.out, name)
            runs[name].append(run_seed(seed, out, [*args.finetune_args, *shlex.split(extra)]))
    if args.variant is None:
        summary = {"seeds": args.seeds, "runs": runs[None], "spread": spread(runs[None])}
        table = markdown(args.seeds, summary["spread"])
    else:
        summary = {"seeds": args.seeds, "common": args.finetune_args,
                   "variants": {name: {"args": extra, "runs": runs[name],
                                       "spread": spread(runs[name])}
                                for name, extra in variants}}
        table = "\n".join(
            f"### {name} (`{extra or 'common arguments only'}`)\n\n"
            + markdown(args.seeds, summary["variants"][name]["spread"])
            for name, extra in variants)
    with open(os.path.join(args.out, "summary.json"), "w", encoding="utf-8") as file:
        json.dump(summary, file, indent=1)
    with open(os.path.join(args.out, "summary.md"), "w", encoding="utf-8") as file:
        file.write(table)
    print(table)


if __name__ == "__main__":
    main()
