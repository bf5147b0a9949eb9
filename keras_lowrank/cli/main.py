"""Entry point of `keras-lowrank`: one module per subcommand.

Each `keras_lowrank/cli/<name>_command.py` defines `add_parser(subparsers)`
and `run(args) -> int`. A user error raises `UsageError` (or `ValueError`,
`FileNotFoundError`): it prints one line on stderr and exits 2.
"""

import argparse
import importlib
import os
import sys

COMMANDS = ("finetune", "export", "merge", "inspect", "compress")


class UsageError(Exception):
    """A mistake in what the user asked for; printed as one line."""


def _load_commands():
    modules = {}
    for name in COMMANDS:
        try:
            modules[name] = importlib.import_module(
                f"keras_lowrank.cli.{name}_command"
            )
        except ModuleNotFoundError as error:
            if error.name != f"keras_lowrank.cli.{name}_command":
                raise
    return modules


def build_parser():
    parser = argparse.ArgumentParser(
        prog="keras-lowrank",
        description="Low-rank adaptation and compression for Keras models, "
        "exported to LiteRT and ONNX.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    modules = _load_commands()
    for module in modules.values():
        module.add_parser(subparsers)
    return parser, modules


def main(argv=None) -> int:
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    parser, modules = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(modules[args.command].run(args) or 0)
    except (UsageError, ValueError, FileNotFoundError) as error:
        message = " ".join(str(error).split())
        print(f"keras-lowrank {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
