"""What a classifier run reports: its keys and its summary table.

report.json, the training curves and the timing lines are every run's
(`keras_lowrank.runs.report_files`).
"""

import numpy as np

from keras_lowrank.adapters.summary import parameter_counts
from keras_lowrank.adapters.summary import weight_bytes
from keras_lowrank.exporters import get_format
from keras_lowrank.runs import phone_artifacts as phone_lib
from keras_lowrank.runs.adapter_report import adapter_lines
from keras_lowrank.runs.checks import finite_or_none
from keras_lowrank.runs.report_files import cpu_line
from keras_lowrank.runs.report_files import stages_line
from keras_lowrank.runs.run_folder import export_formats

# An exported model whose test accuracy moves further than this from the
# Keras model's is called out in the summary.
ACCURACY_DRIFT = 0.005

# Keys of the whole run that every report.json holds.
RUN_KEYS = (
    "test_accuracy",
    "trainable_params",
    "total_params",
    "adapter_bytes",
    "train_seconds",
)
# Keys every report.json holds for each format a run can export, as
# `<format>_<key>` (`tflite_test_accuracy`), None where it was not exported.
FORMAT_KEYS = ("test_accuracy", "accuracy_diff", "bytes", "latency_ms", "max_abs_diff")


def base_sizes(base) -> dict:
    """What the report needs of the float base model, taken before it goes:
    its parameters, its bytes as numpy arrays, and `klr.weight_bytes` (each
    variable at its own dtype)."""
    return {"params": int(parameter_counts(base)[1]),
            "bytes": int(sum(np.asarray(w.numpy()).nbytes for w in base.weights)),
            "weight_bytes": weight_bytes(base)}


def required_keys() -> tuple[str, ...]:
    """Keys every report.json holds (None where a step was skipped)."""
    return RUN_KEYS + tuple(
        f"{format}_{key}" for format in export_formats() for key in FORMAT_KEYS
    ) + tuple(
        f"{name}_{key}" for name in phone_lib.NAMES for key in phone_lib.REPORT_KEYS
    )


def format_values(format, exported, keras_accuracy) -> dict:
    """The `FORMAT_KEYS` of one format, from its entry of `report["exports"]`.

    Args:
        format: str. The format's name.
        exported: dict. Its export result (with `evaluation`), `{}` when it
            was not exported; it has `error` when its export failed.
        keras_accuracy: float. The Keras model's test accuracy.
    """
    accuracy = exported.get("evaluation", {}).get("accuracy")
    values = {
        "test_accuracy": accuracy,
        "accuracy_diff": None if accuracy is None else accuracy - keras_accuracy,
        "bytes": exported.get("size_bytes"),
        "latency_ms": finite_or_none(exported.get("latency_ms")),
        "max_abs_diff": finite_or_none(exported.get("max_abs_diff")),
    }
    return {f"{format}_{key}": values[key] for key in FORMAT_KEYS}


def summary_table(report) -> str:
    """The lines printed at the end of a run: accuracy, size and latency."""
    rows = [("model", "test accuracy", "size", "latency (batch 1)")]
    rows.append((
        "Keras (LoRA)",
        _accuracy(report["test_accuracy"]),
        _size(report["base_bytes"]),
        "-",
    ))
    rows.append(("adapters.safetensors", "-", _size(report["adapter_bytes"]), "-"))
    for format, exported in report["exports"].items():
        name = _title(format)
        if "error" in exported:
            rows.append((f"{name}", "failed", "-", "-"))
            continue
        quantize = None if phone_lib.is_phone_artifact(format) else exported.get("quantize")
        rows.append((
            f"{name}" + (f" ({quantize})" if quantize else ""),
            _accuracy(report[f"{format}_test_accuracy"]),
            _size(report[f"{format}_bytes"]),
            _latency(report[f"{format}_latency_ms"]),
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
             for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    share = 100.0 * report["trainable_params"] / report["total_params"]
    lines += [
        "",
        f"trainable params: {report['trainable_params']:,} of "
        f"{report['total_params']:,} ({share:.2f}%)",
        f"training: {report['epochs_run']} epochs in "
        f"{report['train_seconds']:.0f} s, best epoch {report['best_epoch']}"
        + (f" (validation accuracy {_accuracy(report['best_val_accuracy'])})"
           if report.get("best_val_accuracy") is not None else ""),
        stages_line(report),
    ]
    if report.get("stage_cpu_seconds"):
        lines.append(cpu_line(report["stage_cpu_seconds"]))
    if report.get("precision"):
        precision = report["precision"]
        lines.append(
            f"precision: trained in {precision['train']} ({precision['reason']}); "
            f"evaluated and exported in {precision['evaluate_and_export']}"
        )
    lines += adapter_lines(report)
    if report.get("distribute"):
        distribute = report["distribute"]
        lines.append(
            f"distributed: {distribute['kind']}, {distribute['replicas']} "
            f"replicas on {distribute['workers']} worker(s); files written by "
            "the chief")
    for format, exported in report["exports"].items():
        if "error" in exported:
            lines.append(f"{format} export failed: {exported['error']}")
            continue
        if phone_lib.is_phone_artifact(format):
            lines.append(_phone_line(format, report))
        accuracy = report.get(f"{format}_test_accuracy")
        if accuracy is not None:
            drift = accuracy - report["test_accuracy"]
            if abs(drift) > ACCURACY_DRIFT:
                lines.append(
                    f"warning: {format} test accuracy differs from Keras by "
                    f"{100 * drift:+.2f} points (more than "
                    f"{100 * ACCURACY_DRIFT:.1f}); check before shipping it"
                )
    return "\n".join(lines)


def _title(name):
    if phone_lib.is_phone_artifact(name):
        return phone_lib.get_artifact(name).title
    return get_format(name).title


def _phone_line(name, report):
    """`int8: accuracy ... on N raw test strings ...; batch 1 ...`; for a
    MediaPipe artifact `labels equal Keras' on n/N test strings`."""
    exported = report["exports"][name]
    artifact = phone_lib.get_artifact(name)
    parts = [
        f"{name}: {artifact.runs_on}, accuracy "
        f"{_accuracy(report.get(f'{name}_test_accuracy'))} on "
        f"{exported.get('eval_examples', 0)} raw test strings"
    ]
    by_length = exported.get("latency_by_length") or {}
    if by_length:
        parts.append("batch 1 " + ", ".join(
            f"{value['ms']:.2f} ms at {value['tokens']} tokens"
            for value in by_length.values()))
    equal = _labels_equal(report.get(f"{name}_test_label_agreement"),
                          exported.get("eval_examples", 0))
    if equal is not None:
        parts.append(
            f"labels equal Keras' on {equal}/{exported['eval_examples']} test "
            f"strings, max score diff {exported['eval_max_score_diff']:.2g}")
    elif report.get(f"{name}_label_agreement") is not None:
        parts.append(
            f"labels agree with Keras on "
            f"{100 * report[f'{name}_label_agreement']:.1f}% of "
            f"{exported.get('texts_checked', 0)} strings, max score diff "
            f"{report[f'{name}_max_abs_diff']:.2g}")
    if report.get(f"{name}_token_agreement") is not None:
        parts.append(f"token ids as keras-hub's on "
                     f"{100 * report[f'{name}_token_agreement']:.1f}%")
    if exported.get("float_layers"):
        parts.append(f"{len(exported['float_layers'])} weight layers kept in float")
    return "; ".join(parts)


def _labels_equal(agreement, count):
    """How many of `count` strings gave Keras' label (None: not measured)."""
    return None if agreement is None else round(agreement * count)


def _accuracy(value):
    return "-" if value is None else f"{value:.4f}"


def _latency(value):
    return "-" if value is None else f"{value:.1f} ms"


def _size(size):
    if size is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return "-"
