"""The `keras-lowrank` console script: the CLI without TensorFlow's banner.

Importing keras_lowrank imports TensorFlow, whose C++ runtime prints a few
lines on stderr before its logging is set up ("Could not find cuda
drivers", "oneDNN custom operations are on"), whatever TF_CPP_MIN_LOG_LEVEL
says. They would stand before every one-line error of the command line.
This module lives outside the package so that it can import the package with
stderr captured: those native lines are dropped, anything else (a Python
warning, the reason of a failed import) is passed on.
"""

import contextlib
import os
import re
import sys
import tempfile

# absl's "before InitializeLog" notice and glog-style lines: I1127 12:00:00...
_NATIVE_LOG = re.compile(r"^(WARNING: All log messages before absl|[IWE]\d{4} )")


@contextlib.contextmanager
def _native_logs_dropped():
    """Captures file descriptor 2; replays all but native log lines."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            for line in capture.read().decode(errors="replace").splitlines(True):
                if not _NATIVE_LOG.match(line):
                    sys.stderr.write(line)
            sys.stderr.flush()


def main(argv=None):
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        with _native_logs_dropped():
            from keras_lowrank.cli.main import main as cli_main
    except KeyboardInterrupt:  # Ctrl-C while TensorFlow loads: one line too
        print("keras-lowrank: interrupted", file=sys.stderr)
        return 130
    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
