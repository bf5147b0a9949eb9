"""What a run reports of its adapters: the quantized base's weight bytes,
AdaLoRA's ranks and budget, and the rank-allocation plot.

Every task adds these the same way (`adapter_values`, `add_rank_plot`);
report.json and the training curves are `report_files`'.
"""

import os

import keras_lowrank as klr
from keras_lowrank.runs.run_folder import RANKS_FILE
from keras_lowrank.utils.atomic import atomic_path


def adapter_values(model, base_bytes, options, adaptive) -> dict:
    """The report's keys of the adapters: quantization and AdaLoRA.

    Args:
        model: keras.Model. The adapted model, after training.
        base_bytes: int. `klr.weight_bytes` of the float model it was made
            from.
        options: RunOptions.
        adaptive: `klr.AdaLoRA` or None. The run's schedule
            (`adapter_setup.adalora_schedule`).

    Returns:
        `base_quantization`, `quantize_frozen` (None for a float base),
        `base_calibration` (the training examples an int4 base was fitted
        to by GPTQ; 0: rounded to nearest; None for another base);
        `weight_bytes`: `klr.weight_bytes` of the adapted model (its
        quantized kernels at their own dtype); `weight_bytes_float_base`:
        of the float model the run loaded (counted, not estimated: the run
        holds it already); `adapter_ranks`: `{layer path: rank}`
        (`klr.adapter_ranks`: AdaLoRA's surviving ranks), and `adaptive`:
        the schedule with its initial and target budgets, or None.
    """
    ranks = klr.adapter_ranks(model)
    values = {
        "base_quantization": options.base_quantization,
        "quantize_frozen": options.quantize_frozen,
        "base_calibration": options.base_calibration,
        "weight_bytes": int(klr.weight_bytes(model)),
        "weight_bytes_float_base": int(base_bytes),
        "adapter_ranks": ranks,
        "adaptive": None,
    }
    if adaptive is not None:
        values["adaptive"] = {
            **adaptive.to_dict(),
            "initial_rank": options.adaptive_initial_rank,
            "adapters": len(ranks),
            "initial_budget": options.adaptive_initial_rank * len(ranks),
            "target_budget": adaptive.target_rank * len(ranks),
            "final_budget": sum(ranks.values()),
        }
    return values


def adapter_lines(report) -> list:
    """The summary's lines of a quantized base and of AdaLoRA (none for a
    plain LoRA run), and the peak memory."""
    lines = []
    if report.get("base_quantization"):
        lines.append(
            f"base: {report['base_quantization']} ({report['quantize_frozen']}), "
            f"weights {report['weight_bytes']:,} bytes vs "
            f"{report['weight_bytes_float_base']:,} for the float base "
            f"({report['weight_bytes'] / report['weight_bytes_float_base']:.2f}x)")
    adaptive = report.get("adaptive")
    if adaptive:
        lines.append(
            f"AdaLoRA: rank {adaptive['initial_rank']} -> {adaptive['target_rank']} "
            f"on average; {adaptive['final_budget']} of "
            f"{adaptive['initial_budget']} triplets kept (budget "
            f"{adaptive['target_budget']}) over {adaptive['adapters']} adapters")
    if report.get("peak_rss_bytes"):
        lines.append(f"peak memory (RSS): {report['peak_rss_bytes'] / 2**20:,.0f} MiB")
    return lines


def add_rank_plot(report, build, out):
    """Under AdaLoRA, plots `report["adapter_ranks"]` to `build` and names
    it in `report["files"]` (by its place in `out`); else does nothing."""
    adaptive = report.get("adaptive")
    if adaptive is None:
        return
    plot_rank_allocation(report["adapter_ranks"], os.path.join(build, RANKS_FILE),
                         adaptive["initial_rank"], adaptive["target_rank"])
    report["files"]["rank_allocation"] = os.path.join(out, RANKS_FILE)


def plot_rank_allocation(ranks, path, initial_rank, target_rank):
    """Each adapter's final rank as a horizontal bar, as a PNG.

    Args:
        ranks: dict. `{layer path: rank}`, in the model's layer order.
        path: str. The `.png` file to write (atomically).
        initial_rank: int. The rank every adapter started at (a line).
        target_rank: int. The average rank of the budget (a line).
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    names = list(ranks)
    figure = Figure(figsize=(10, max(3, 0.3 * len(names) + 1.5)), dpi=100)
    axes = figure.add_subplot(1, 1, 1)
    positions = range(len(names))
    axes.barh(positions, [ranks[name] for name in names], label="final rank")
    axes.axvline(initial_rank, color="gray", linestyle=":", label="initial rank")
    axes.axvline(target_rank, color="gray", linestyle="--", label="target (average)")
    axes.set_yticks(list(positions), names, fontsize=7)
    axes.invert_yaxis()  # the first layer on top
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlim(0, initial_rank + 1)
    axes.set_xlabel("rank")
    axes.set_title(f"AdaLoRA rank allocation: {sum(ranks.values())} of "
                   f"{initial_rank * len(names)} triplets kept")
    axes.grid(alpha=0.3, axis="x")
    axes.legend()
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
