"""Entry point of `keras-lowrank`: one module per subcommand.

Each `keras_lowrank/cli/<name>_command.py` defines `add_parser(subparsers)`
and `run(args) -> int`. A user error prints one line on stderr,
`keras-lowrank <command>: error: ...`, and exits 2: a bad command line, a
`UsageError`, `ValueError` or `OSError` (a missing file, an `--out` that
cannot be written), or a missing optional package. Anything else is a bug
and keeps its traceback. Ctrl-C prints one line and exits 130; a command
whose module sets `OUT_IS_ATOMIC = True` (everything it writes goes to
`--out` in one rename at the end) says that `--out` is as it was.
"""

import argparse
import importlib
import os
import sys

from keras_lowrank.exporters import all_formats
from keras_lowrank.utils.optional import MissingDependencyError

COMMANDS = ("finetune", "export", "merge", "inspect", "compress")
# The exit status of a process ended by Ctrl-C (SIGINT): 128 + 2.
INTERRUPTED = 130


class UsageError(Exception):
    """A mistake in what the user asked for; printed as one line."""


class ArgumentParser(argparse.ArgumentParser):
    """An `argparse.ArgumentParser` whose usage errors take one line."""

    def error(self, message):
        message = " ".join(message.split())
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


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
    """The parser of `keras-lowrank`, and of each command, and its module.

    Returns:
        `(parser, command_parsers, modules)`, the last two keyed by command.
    """
    *titles, last = [record.title for record in all_formats()]
    formats = f"{', '.join(titles)} and {last}" if titles else last
    parser = ArgumentParser(
        prog="keras-lowrank",
        description="Low-rank adaptation and compression for Keras models, "
        f"exported to {formats}.",
    )
    subparsers = parser.add_subparsers(
        dest="command", required=True, parser_class=ArgumentParser
    )
    modules = _load_commands()
    for module in modules.values():
        module.add_parser(subparsers)
    return parser, subparsers.choices, modules


def main(argv=None) -> int:
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    parser, command_parsers, modules = build_parser()
    args, extras = parser.parse_known_args(argv)
    if extras:
        # Left over by the command's parser: its error, not the top one's.
        command_parsers[args.command].error(
            f"unrecognized arguments: {' '.join(extras)}"
        )
    module = modules[args.command]
    try:
        return int(module.run(args) or 0)
    except (UsageError, ValueError, OSError, MissingDependencyError) as error:
        message = " ".join(_describe(error).split())
        print(f"keras-lowrank {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        line = "interrupted"
        if getattr(module, "OUT_IS_ATOMIC", False):
            line = f"interrupted, nothing written: --out '{args.out}' is as it was"
        print(f"keras-lowrank {args.command}: {line}", file=sys.stderr)
        return INTERRUPTED


def _describe(error):
    # `open()` and `os` errors read "[Errno 20] Not a directory: 'x/y'".
    if isinstance(error, OSError) and error.strerror and error.filename:
        return f"{error.strerror}: '{error.filename}'"
    return str(error)


if __name__ == "__main__":
    sys.exit(main())
