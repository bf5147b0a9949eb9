"""Ratios, targets and the RESULTS.md tables, from the raw results dict."""

from benchmarks.settings import KERAS_CONFIGS
from benchmarks.settings import LABELS
from benchmarks.settings import PEFT_CONFIG

PEFT_TRAINABLE = 74_498  # PEFT LoRA r8 on query/value of MiniLM + its head
ADAPTED_LAYERS = 12


def get(value, *keys):
    """`value[k1][k2]...`, or None where any level is missing."""
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def _ratio(a, b):
    return a / b if a is not None and b not in (None, 0) else None


def ratios(results):
    """The headline ratios (None where a figure is missing)."""
    step = {c: get(results, "train_step", c, "step", "median_s")
            for c in (*KERAS_CONFIGS, PEFT_CONFIG)}
    rss = {c: get(results, "train_step", c, "peak_rss_bytes") for c in KERAS_CONFIGS}
    latency = {
        (rows, model): get(results, "latency", "batches", rows, model, "median_s")
        for rows in ("1", str(get(results, "settings", "batch_size")))
        for model in ("base", "adapted", "merged")
    }
    batch = str(get(results, "settings", "batch_size"))
    return {
        "lora_vs_full_step": _ratio(step["klr_lora"], step["full"]),
        "lora_vs_keras_builtin_step": _ratio(step["klr_lora"], step["keras_lora"]),
        "lora_vs_peft_step": _ratio(step["klr_lora"], step[PEFT_CONFIG]),
        "keras_builtin_vs_full_step": _ratio(step["keras_lora"], step["full"]),
        "lora_vs_full_peak_rss": _ratio(rss["klr_lora"], rss["full"]),
        "lora_vs_keras_builtin_peak_rss": _ratio(rss["klr_lora"], rss["keras_lora"]),
        "merged_vs_base_latency": _ratio(
            latency[batch, "merged"], latency[batch, "base"]),
        "merged_vs_base_latency_batch_1": _ratio(
            latency["1", "merged"], latency["1", "base"]),
        "adapted_vs_base_latency": _ratio(
            latency[batch, "adapted"], latency[batch, "base"]),
        "adapted_vs_base_latency_batch_1": _ratio(
            latency["1", "adapted"], latency["1", "base"]),
    }


def targets(results, ratio):
    """The issue's targets for (b), each with its value and whether it is met."""
    trainable = get(results, "train_step", "klr_lora", "trainable_params")
    peft = get(results, "train_step", PEFT_CONFIG, "trainable_params") or PEFT_TRAINABLE

    def check(name, value, target, ok):
        return {"name": name, "value": value, "target": target,
                "met": None if value is None else bool(ok(value))}

    return [
        check("lora_vs_keras_builtin_step", ratio["lora_vs_keras_builtin_step"],
              "<= 1.00", lambda v: v <= 1.0),
        check("lora_vs_full_step", ratio["lora_vs_full_step"], "<= 0.80",
              lambda v: v <= 0.80),
        check("lora_vs_full_peak_rss", ratio["lora_vs_full_peak_rss"], "<= 0.85",
              lambda v: v <= 0.85),
        check("trainable_params", trainable, f"== PEFT's {peft:,}",
              lambda v: v == peft),
        check("merged_vs_base_latency", ratio["merged_vs_base_latency"],
              "within 2%", lambda v: abs(v - 1) <= 0.02),
        check("merged_vs_base_latency_batch_1",
              ratio["merged_vs_base_latency_batch_1"], "within 2%",
              lambda v: abs(v - 1) <= 0.02),
    ]


# === Markdown ===


def _f(value, spec=".3f", missing="-"):
    return missing if value is None else format(value, spec)


def _mb(value):
    return _f(None if value is None else value / 1e6, ",.0f")


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _skipped(entry):
    if entry is None:
        return "not run"
    return entry.get("skipped") or entry.get("error")


def step_table(results):
    rows = []
    full = get(results, "train_step", "full", "step", "median_s")
    for config in (*KERAS_CONFIGS, PEFT_CONFIG):
        entry = get(results, "train_step", config)
        step = get(entry, "step")
        if step is None:
            rows.append([LABELS[config], "-", f"skipped: {_skipped(entry)}",
                         "", "", "", ""])
            continue
        rows.append([
            LABELS[config], f"{entry['trainable_params']:,}",
            _f(step["median_s"]), _f(step["min_s"]), _f(step["max_s"]),
            _mb(entry.get("peak_rss_bytes")), _f(_ratio(step["median_s"], full), ".2f"),
        ])
    return _table(["configuration", "trainable params", "median s/step",
                   "min", "max", "peak RSS MB", "vs (a)"], rows)


def targets_table(checks):
    rows = []
    for check in checks:
        value = check["value"]
        shown = f"{value:,}" if isinstance(value, int) else _f(value)
        met = {True: "yes", False: "**no**", None: "-"}[check["met"]]
        rows.append([check["name"], shown, check["target"], met])
    return _table(["(b) against", "value", "target", "met"], rows)


def accuracy_table(results):
    rows = []
    for config in KERAS_CONFIGS:
        entry = get(results, "accuracy", config)
        if get(entry, "test_accuracy") is None:
            rows.append([LABELS[config], f"skipped: {_skipped(entry)}", "", "", ""])
            continue
        rows.append([LABELS[config], f"{entry['learning_rate']:g}",
                     _f(entry["test_accuracy"]), _f(entry["fit_s"], ".0f"),
                     _f(entry["fit_s_per_step"])])
    return _table(["configuration", "AdamW lr", "test accuracy", "fit s",
                   "s/step (seq {})".format(get(results, "settings",
                                                "train_sequence_length"))], rows)


def latency_table(results):
    batches = get(results, "latency", "batches") or {}
    sizes = sorted(batches, key=int)
    rows = []
    for model in ("base", "adapted", "merged"):
        row = [model]
        for size in sizes:
            median = get(batches, size, model, "median_s")
            base = get(batches, size, "base", "median_s")
            row += [_f(None if median is None else median * 1e3, ".2f"),
                    _f(_ratio(median, base), ".3f")]
        rows.append(row)
    header = ["model"]
    for size in sizes:
        header += [f"batch {size} median ms", "vs base"]
    return _table(header, rows)


def exports_table(results):
    formats = get(results, "exports", "formats") or {}
    rows = []
    for name, entry in formats.items():
        if "error" in entry:
            rows.append([name, f"failed: {entry['error'][:200]}", "", "", ""])
            continue
        rows.append([name, _f(entry["size_bytes"] / 1e6, ".1f"),
                     _f(entry["latency_ms_batch_1"], ".2f"),
                     _f(entry["max_abs_diff"], ".2e"), entry["runtime"]])
    return _table(["export of the merged model", "size MB",
                   "latency ms (batch 1)", "max abs diff vs Keras", "runtime"], rows)
