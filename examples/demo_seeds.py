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
"""

import argparse
import json
import os
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
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1337, 1, 2])
    parser.add_argument("--out", default="runs/demo_seeds")
    parser.add_argument("finetune_args", nargs=argparse.REMAINDER,
                        help="after --: more arguments of keras-lowrank finetune")
    args = parser.parse_args(argv)
    if args.finetune_args[:1] == ["--"]:
        args.finetune_args = args.finetune_args[1:]
    return args


def run_seed(seed, out, extra):
    folder = os.path.join(out, f"seed-{seed}")
    command = [sys.executable, "-m", "keras_lowrank.cli.main", "finetune",
               "--seed", str(seed), "--out", folder, *extra]
    print("$", " ".join(command), flush=True)
    subprocess.run(command, cwd=ROOT, check=True)
    with open(os.path.join(folder, "report.json"), encoding="utf-8") as file:
        return figures(json.load(file))


def figures(report):
    """The `FIGURES` of one run's report (None where it has none)."""
    return {key: report.get(key) for key in FIGURES}


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
            digits = 4 if "accuracy" in key else 1
            lines.append(f"| {label} | {s['mean']:.{digits}f} | "
                         f"{s['min']:.{digits}f} | {s['max']:.{digits}f} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    runs = [run_seed(seed, args.out, args.finetune_args) for seed in args.seeds]
    summary = spread(runs)
    with open(os.path.join(args.out, "summary.json"), "w", encoding="utf-8") as file:
        json.dump({"seeds": args.seeds, "runs": runs, "spread": summary}, file, indent=1)
    table = markdown(args.seeds, summary)
    with open(os.path.join(args.out, "summary.md"), "w", encoding="utf-8") as file:
        file.write(table)
    print(table)


if __name__ == "__main__":
    main()
