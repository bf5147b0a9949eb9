"""What every run writes: report.json, training_curves.png, the timing lines.

The classifier's and the causal LM's runs write these the same way; what
each task's report holds besides is the task's (`finetune.report`,
`lm_finetune.lm_report`).
"""

import json
import os

from keras_lowrank.runs.run_folder import ADAPTERS_FILE
from keras_lowrank.runs.run_folder import CURVES_FILE
from keras_lowrank.runs.run_folder import REPORT_FILE
from keras_lowrank.utils.atomic import atomic_path


def write_json(report, path):
    """Writes `report` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as file:
            json.dump(report, file, indent=2, allow_nan=False)
            file.write("\n")


def plot_training_curves(history, path, best_epoch=None):
    """Loss and accuracy per epoch, train and validation, as a PNG.

    Args:
        history: dict of per-epoch lists: `loss`, `accuracy`, and
            `val_loss`, `val_accuracy` when there was validation data.
        path: str. The `.png` file to write (atomically).
        best_epoch: int or None. The 1-based epoch whose weights were kept;
            marked with a vertical line.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(10, 4), dpi=100)
    for index, metric in enumerate(("loss", "accuracy")):
        axes = figure.add_subplot(1, 2, index + 1)
        for prefix, label in (("", "train"), ("val_", "validation")):
            values = history.get(prefix + metric)
            if values:
                epochs = range(1, len(values) + 1)
                axes.plot(epochs, values, marker="o", label=label)
        if best_epoch:
            axes.axvline(best_epoch, color="gray", linestyle="--", label="best epoch")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_xlabel("epoch")
        axes.set_ylabel(metric)
        axes.set_title(metric)
        axes.grid(alpha=0.3)
        axes.legend()
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")


def add_files(report, history, best, build, out):
    """Plots the training curves in `build` and lists the run's files.

    Sets `report["files"]`: the adapters, every export that did not fail,
    the curves and the report, each named by its place in `out` (where the
    run folder is moved at the end).

    Args:
        report: dict. The report; its `exports` are `{name: result}`.
        history: dict. Per-round `loss`, `accuracy`, `val_*` lists.
        best: int. The 1-based round whose weights were kept.
        build: str. The folder the run is built in.
        out: str. The run's `--out`.
    """
    files = {"adapters": os.path.join(out, ADAPTERS_FILE)}
    for name, exported in report["exports"].items():
        if "error" not in exported:
            files[name] = exported["path"]
    plot_training_curves(history, os.path.join(build, CURVES_FILE), best)
    files["training_curves"] = os.path.join(out, CURVES_FILE)
    files["report"] = os.path.join(out, REPORT_FILE)
    report["files"] = files


def stages_line(report) -> str:
    """`stages: data 3 s, model 2 s, ...; total 9 s`."""
    return "stages: " + ", ".join(
        f"{name} {seconds:.0f} s" for name, seconds in report["stage_seconds"].items()
    ) + f"; total {report['total_seconds']:.0f} s"


def cpu_line(stage_cpu_seconds) -> str:
    """`cpu: user U s, system S s (P% system)`, summed over the stages.

    Args:
        stage_cpu_seconds: `{stage: {"user": float, "system": float}}`.
    """
    user = sum(times["user"] for times in stage_cpu_seconds.values())
    system = sum(times["system"] for times in stage_cpu_seconds.values())
    total = user + system
    share = f"{100 * system / total:.1f}%" if total > 0 else "-"
    return f"cpu: user {user:.1f} s, system {system:.1f} s ({share} system)"


def export_line(name, exported, describe) -> str:
    """The stage line of one export: `name: FAILED: why`, or `describe`'s.

    Args:
        name: str. The format or artifact.
        exported: dict. Its result (`record_export`).
        describe: callable taking the result of a written artifact,
            returning what follows `name: ` (its path, size and figures).
    """
    if "error" in exported:
        return f"{name}: FAILED: {exported['error']}"
    return f"{name}: {describe(exported)}"
