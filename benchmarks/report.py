"""Ratios, targets and the RESULTS.md tables, from the raw results dict."""

from benchmarks import flops
from benchmarks.settings import KERAS_CONFIGS
from benchmarks.settings import LABELS
from benchmarks.settings import PEFT_CONFIG

PEFT_TRAINABLE = 74_498  # PEFT LoRA r8 on query/value of MiniLM + its head
ADAPTED_LAYERS = 12
FINETUNE_ROW = "finetune_epoch"
RECIPE_ROW = "keras_recipe_epoch"
# The issue's target: `finetune`'s epoch in at most 0.6x the wall time of
# keras-hub's recipe, at equal or better test accuracy.
RECIPE_RATIO_TARGET = 0.60
# The target: system time under 10% of the pipeline's CPU time.
SYSTEM_SHARE_TARGET = 0.10


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
        "finetune_vs_keras_recipe_epoch": _ratio(
            get(results, FINETUNE_ROW, "train_seconds"),
            get(results, RECIPE_ROW, "fit_seconds")),
    }


GEMM_STATISTICS = ("median", "best")


def gemm_flops_per_second(results, dtype="float32", statistic="median"):
    """The machine's GEMM throughput in `dtype`, FLOP/s, or None.

    Args:
        results: dict. The bench's results (its `gemm` entry).
        dtype: str. A dtype the GEMM probe timed.
        statistic: str. `"median"` or `"best"` of the probe's repeats: the
            median moves between idle runs (17% once), the best less.

    Raises:
        ValueError: an unknown `statistic`.
    """
    if statistic not in GEMM_STATISTICS:
        raise ValueError(f"Unrecognized statistic={statistic!r}. Supported "
                         f"statistics are: {list(GEMM_STATISTICS)}")
    gflops = get(results, "gemm", "dtypes", dtype, f"gflops_{statistic}")
    return None if gflops is None else gflops * 1e9


def _cpu_row(cpu, steps):
    if not cpu or not steps:
        return {"cpu_user_s_per_step": None, "cpu_system_s_per_step": None,
                "system_share": None}
    total = cpu["user"] + cpu["system"]
    return {"cpu_user_s_per_step": cpu["user"] / steps,
            "cpu_system_s_per_step": cpu["system"] / steps,
            "system_share": cpu["system"] / total if total > 0 else None}


def compute_rows(results):
    """FLOPs, throughput and CPU time of each configuration and the pipeline.

    For each timed training step: analytic FLOPs per step
    (`flops.step_flops` at the batch's shape), tokens/s (padded tokens of a
    step / its median time), GFLOP/s and their share of the machine's
    float32 GEMM throughput (the `gemm` child): of its median
    (`share_of_gemm`) and of its best repeat (`share_of_gemm_best`), and
    user / system CPU per
    step over the timed steps. For one epoch of the `finetune` pipeline
    (`finetune_epoch`): the same over its train stage (its steps and
    validation), FLOPs per step being the epoch's mean, plus the system
    share of the whole pipeline's CPU time (every stage).

    Returns:
        `{"gemm_gflops_per_s": float or None (the median),
        "gemm_best_gflops_per_s": float or None, "rows": {name: {...}}}`.
    """
    gemm = gemm_flops_per_second(results)
    gemm_best = gemm_flops_per_second(results, statistic="best")
    settings = results.get("settings") or {}
    rows = {}
    for config in (*KERAS_CONFIGS, PEFT_CONFIG):
        entry = get(results, "train_step", config)
        median = get(entry, "step", "median_s")
        if not median:
            continue
        batch, seq = entry.get("batch_shape") or (
            settings["batch_size"], settings["sequence_length"])
        step = flops.step_flops(config, batch, seq, settings["rank"])
        rows[config] = {
            "flops_per_step": step,
            "tokens_per_s": batch * seq / median,
            "gflops_per_s": step / median / 1e9,
            "share_of_gemm": flops.share_of_gemm(step, median, gemm),
            "share_of_gemm_best": flops.share_of_gemm(step, median, gemm_best),
            **_cpu_row(entry.get("step_cpu_seconds"), get(entry, "step", "n")),
        }
    epoch = results.get(FINETUNE_ROW)
    if get(epoch, "train_seconds"):
        seconds, steps = epoch["train_seconds"], epoch["steps"]
        stages = epoch["stage_cpu_seconds"]
        rows[FINETUNE_ROW] = {
            "flops_per_step": epoch["epoch_flops"] / steps,
            "epoch_flops": epoch["epoch_flops"],
            "tokens_per_s": epoch["padded_tokens"] / seconds,
            "real_tokens_per_s": epoch["real_tokens"] / seconds,
            "gflops_per_s": epoch["epoch_flops"] / seconds / 1e9,
            "share_of_gemm": flops.share_of_gemm(epoch["epoch_flops"], seconds, gemm),
            "share_of_gemm_best": flops.share_of_gemm(epoch["epoch_flops"], seconds,
                                                      gemm_best),
            **_cpu_row(stages.get("train"), steps),
            "pipeline_system_share": pipeline_system_share(stages),
        }
    return {"gemm_gflops_per_s": None if gemm is None else gemm / 1e9,
            "gemm_best_gflops_per_s": None if gemm_best is None else gemm_best / 1e9,
            "rows": rows}


def pipeline_system_share(stage_cpu_seconds):
    """System time over all CPU time, summed over a run's stages, or None."""
    if not stage_cpu_seconds:
        return None
    user = sum(times["user"] for times in stage_cpu_seconds.values())
    system = sum(times["system"] for times in stage_cpu_seconds.values())
    return system / (user + system) if user + system > 0 else None


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
        check("finetune_system_cpu_share",
              pipeline_system_share(get(results, FINETUNE_ROW, "stage_cpu_seconds")),
              f"< {SYSTEM_SHARE_TARGET:.2f}", lambda v: v < SYSTEM_SHARE_TARGET),
        recipe_epoch_target(results, ratio.get("finetune_vs_keras_recipe_epoch")),
    ]


def recipe_epoch_target(results, value):
    """`finetune`'s epoch against keras-hub's recipe: met when the time
    ratio is at most `RECIPE_RATIO_TARGET` and `finetune`'s test accuracy
    is at least the recipe's (None when either figure is missing)."""
    accuracy = {row: get(results, row, "test_accuracy")
                for row in (FINETUNE_ROW, RECIPE_ROW)}
    met = None
    if value is not None and None not in accuracy.values():
        met = (value <= RECIPE_RATIO_TARGET
               and accuracy[FINETUNE_ROW] >= accuracy[RECIPE_ROW])
    return {"name": "finetune_vs_keras_recipe_epoch", "value": value,
            "target": f"<= {RECIPE_RATIO_TARGET:.2f}, accuracy >= the recipe's",
            "met": met}


# === Markdown ===


def _f(value, spec=".3f", missing="-"):
    return missing if value is None else format(value, spec)


def _percent(fraction):
    return "-" if fraction is None else f"{100 * fraction:.1f}%"


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


def compute_table(results):
    """FLOPs, tokens/s, share of the GEMM throughput and CPU time, per row."""
    compute = results.get("compute")
    if not compute or any("share_of_gemm_best" not in row
                          for row in compute["rows"].values()):
        compute = compute_rows(results)  # a results.json from before the best share
    names = {**LABELS, FINETUNE_ROW: "finetune pipeline, 1 epoch (train stage)"}
    rows = []
    for name, row in compute["rows"].items():
        rows.append([
            names[name], _f(row["flops_per_step"] / 1e9, ",.1f"),
            _f(row["tokens_per_s"], ",.0f"), _f(row["gflops_per_s"], ",.1f"),
            _percent(row["share_of_gemm"]), _percent(row.get("share_of_gemm_best")),
            _f(row["cpu_user_s_per_step"], ".3f"),
            _f(row["cpu_system_s_per_step"], ".3f"), _percent(row["system_share"]),
        ])
    return _table(["configuration", "GFLOP/step", "tokens/s", "GFLOP/s",
                   "of GEMM (median)", "of GEMM (best)", "CPU user s/step",
                   "CPU system s/step", "system share"], rows)


def gemm_line(results):
    """One sentence: the GEMM probe's shape and throughput per dtype."""
    gemm = results.get("gemm")
    if get(gemm, "dtypes") is None:
        return f"GEMM probe not measured ({_skipped(gemm)})."
    m, k, n = gemm["shape"]
    # float32 first: the yardstick (results.json sorts its keys).
    dtypes = sorted(gemm["dtypes"], key=lambda dtype: (dtype != "float32", dtype))
    per_dtype = "; ".join(
        f"{dtype} {_f(gemm['dtypes'][dtype]['gflops_median'], ',.1f')} GFLOP/s "
        f"median ({_f(gemm['dtypes'][dtype]['gflops_best'], ',.1f')} best)"
        for dtype in dtypes)
    return (f"TensorFlow GEMM on this machine, `({m}, {k}) @ ({k}, {n})`, "
            f"{gemm['repeats']} timed repeats: {per_dtype}. Shares below are of "
            "the float32 median and of its best repeat (a median moved 17% "
            "between two idle runs).")


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
