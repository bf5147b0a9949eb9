"""What a causal-LM run prints: its stage lines and its summary table."""

from keras_lowrank.runs.adapter_report import adapter_lines
from keras_lowrank.runs.report_files import cpu_line
from keras_lowrank.runs.report_files import stages_line


def summary_table(report) -> str:
    """The lines printed at the end of a run: before and after."""
    rows = [("", "before", "after")]
    rows.append(("test accuracy (Keras, greedy)",
                 number(report["test_accuracy_before"]),
                 number(report["test_accuracy"])))
    rows.append(("held-out loss", number(report["heldout_loss_before"]),
                 number(report["heldout_loss"])))
    rows.append(("held-out perplexity", number(report["heldout_perplexity_before"]),
                 number(report["heldout_perplexity"])))
    for format, exported in report["exports"].items():
        quantized = f", {exported['quantize']}" if exported.get("quantize") else ""
        rows.append((f"test accuracy ({format} runtime{quantized})", "-",
                     number(exported["test_accuracy"])))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    share = 100.0 * report["trainable_params"] / report["total_params"]
    lines += [
        "",
        f"trainable params: {report['trainable_params']:,} of "
        f"{report['total_params']:,} ({share:.2f}%); adapters "
        f"{report['adapter_bytes']:,} bytes",
        f"training: {report['steps_run']} steps in {report['train_seconds']:.0f} s, "
        f"best after step {report['best_step']}",
        stages_line(report),
        cpu_line(report["stage_cpu_seconds"]),
        *adapter_lines(report),
    ]
    return "\n".join(lines)


def measure_line(measured):
    """The stage line of a model measured before or after training."""
    accuracy = measured["test_accuracy"]
    loss = measured["heldout_loss"]
    return (f"test accuracy {'-' if accuracy is None else f'{accuracy:.4f}'} "
            f"by greedy generation ({measured['generation_seconds']:.0f} s); "
            f"held-out loss {number(loss['loss'])}, perplexity "
            f"{number(loss['perplexity'])} on {loss['tokens']} completion tokens")


def describe_export(exported):
    """What the stage line of a written generator says after its format:
    its size, its test accuracy in its runtime (`-` where not measured:
    LiteRT-LM), and the check's agreement and speed."""
    accuracy = exported["test_accuracy"]
    quantized = ""
    if exported.get("quantize"):
        quantized = (f", {exported['quantize']}: next-token agreement with "
                     f"Keras {exported['next_token_agreement']:.3f}")
    line = (f"{exported['path']} ({exported['size_bytes']:,} bytes"
            f"{quantized}), test accuracy "
            f"{'-' if accuracy is None else f'{accuracy:.4f}'} in its runtime "
            f"({exported['runtime_seconds']:.0f} s)")
    figures = []
    if exported.get("agreement") is not None:
        figures.append(f"greedy tokens equal to Keras {exported['agreement']:.3f}")
    if exported.get("time_to_first_token_ms") is not None:
        figures.append(f"first token {exported['time_to_first_token_ms']:.1f} ms")
    if exported.get("decode_tokens_per_s"):
        figures.append(f"decode {exported['decode_tokens_per_s']:.0f} tokens/s")
    return line + (f"; {', '.join(figures)}" if figures else "")


def number(value):
    return "-" if value is None else f"{value:.4f}"
