"""The command-line arguments every run task shares, read into its options.

`keras-lowrank finetune` takes one set of options for every `--task`. Each
defaults to None, "not given": a task's options are built from the values
the user typed (`given_values`), and every option not typed takes that
task's default (its `RunOptions` subclass). So a value the user typed is
never replaced, even when it equals another task's default.
"""

import sys

from keras_lowrank.finetune import allocator

# The shared options: argparse destination -> `RunOptions` field.
SHARED = {
    "out": "out", "model": "model", "train": "train_files",
    "validation": "validation_files", "test": "test_files",
    "cache_dir": "cache_dir", "max_train_examples": "max_train_examples",
    "max_eval_examples": "max_eval_examples", "rank": "rank", "alpha": "alpha",
    "dropout": "dropout", "targets": "targets", "patience": "patience",
    "batch_size": "batch_size", "learning_rate": "learning_rate",
    "weight_decay": "weight_decay", "warmup_fraction": "warmup_fraction",
    "sequence_length": "sequence_length", "seed": "seed",
    "deterministic": "deterministic",
    "base_quantization": "base_quantization",
    "quantize_frozen": "quantize_frozen", "base_calibration": "base_calibration",
    "adaptive_rank": "adaptive_rank",
    "adaptive_initial_rank": "adaptive_initial_rank",
}
# The classifier's options: argparse destination -> `FinetuneOptions` field
# (`phone_artifacts` is read apart: a flag that stands for the names).
CLASSIFIER_ONLY = {
    "text_column": "text_column", "label_column": "label_column",
    "labels": "labels", "epochs": "epochs", "precision": "precision",
    "distribute": "distribute", "startup_timeout": "startup_timeout",
    "phone_artifacts": "phone_artifacts",
}
# What `--export` takes to export nothing.
NO_EXPORT = "none"


def flag(dest) -> str:
    """The command-line flag of argparse destination `dest`."""
    return "--" + dest.replace("_", "-")


def given_values(args, fields) -> dict:
    """`{field: value}` of the options in `fields` that the user typed.

    Args:
        args: argparse.Namespace. Parsed with every option defaulting to None.
        fields: dict. argparse destination -> options field.

    Returns:
        The typed values, lists as tuples; an option not typed is absent.
    """
    values = {}
    for dest, field in fields.items():
        value = getattr(args, dest, None)
        if value is not None:
            values[field] = tuple(value) if isinstance(value, list) else value
    return values


def shared_values(args, supported_exports) -> dict:
    """The typed values of the shared options, `--export`,
    `--tflite-quantize` and `--quiet`, as options fields.

    Args:
        args: argparse.Namespace.
        supported_exports: tuple of str. The task's export formats.

    Raises:
        ValueError: a bad `--export` (see `export_from_args`), or `--rank`
            with `--adaptive-rank` (AdaLoRA's starting rank is
            `--adaptive-initial-rank`).
    """
    if args.rank is not None and args.adaptive_rank is not None:
        raise ValueError(
            "--rank is the rank of plain LoRA; AdaLoRA's starting rank is "
            f"--adaptive-initial-rank. Received: --rank {args.rank} with "
            f"--adaptive-rank {args.adaptive_rank}. Pass --adaptive-initial-rank "
            f"{args.rank} instead of --rank {args.rank}")
    values = given_values(args, SHARED)
    if args.export is not None:
        values["export"] = export_from_args(args.export, supported_exports)
    if args.tflite_quantize is not None:
        values["tflite_quantize"] = (None if args.tflite_quantize == NO_EXPORT
                                     else args.tflite_quantize)
    values["verbose"] = 2 if args.quiet else 1
    return values


def export_from_args(formats, supported) -> tuple:
    """The `export` field of `--export FORMAT ...`: `()` for `none`.

    Args:
        formats: list of str. What the user typed.
        supported: tuple of str. The task's formats.

    Raises:
        ValueError: `none` with a format, or an unknown or repeated format;
            the message lists what `--export` takes, `none` included.
    """
    typed = " ".join(formats)
    if NO_EXPORT in formats:
        if len(formats) != 1:
            raise ValueError(
                f"--export {NO_EXPORT} cannot be combined with formats. "
                f"Received: --export {typed}. Pass either --export {NO_EXPORT} "
                "or the formats")
        return ()
    if any(f not in supported for f in formats) or len(set(formats)) != len(formats):
        raise ValueError(
            f"Unrecognized or repeated export format in --export {typed}. "
            f"Supported formats are: {[*supported, NO_EXPORT]} "
            f"({NO_EXPORT}: export nothing)")
    return tuple(formats)


def refuse_given(args, dests, task):
    """Raises ValueError when an option of another task was typed.

    Args:
        args: argparse.Namespace.
        dests: tuple of str. Destinations of the options `--task task`
            does not take.
        task: str. The task that was asked for.
    """
    for dest in dests:
        value = getattr(args, dest, None)
        if value is not None:
            other = "classifier" if task == "causal-lm" else "causal-lm"
            raise ValueError(
                f"{flag(dest)} applies to --task {other} only. Received: --task "
                f"{task} with {_typed(dest, value)}. Leave {flag(dest)} out, or "
                f"pass --task {other}")


def _typed(dest, value):
    """The option as the user typed it: `--epochs 3`, `--no-deterministic`."""
    if isinstance(value, bool):
        return flag(dest) if value else "--no-" + flag(dest)[2:]
    if isinstance(value, list):
        return f"{flag(dest)} {' '.join(map(str, value))}"
    return f"{flag(dest)} {value}"


def run_task(run, options, command="finetune") -> int:
    """Runs a task's `run(options, log=...)` as this command's process.

    Returns:
        The exit status of its report (`exit_status`).
    """
    # The process is this command's: glibc keeps freed tensor memory for
    # reuse instead of faulting it in again each step (less system time).
    allocator.keep_freed_memory()
    report = run(options, log=lambda line: print(line, flush=True))
    return exit_status(report, command)


def exit_status(report, command="finetune") -> int:
    """1 (and a line on stderr naming them) when an export failed, else 0."""
    failed = [name for name, exported in report["exports"].items()
              if "error" in exported]
    if failed:
        print(f"keras-lowrank {command}: export failed: {', '.join(failed)}",
              file=sys.stderr)
        return 1
    return 0
