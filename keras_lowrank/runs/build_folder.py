"""`run_in_build_folder`: a run's stages in a folder beside `--out`, moved
into place whole at the end.

Every task runs this way: `--out` is checked before any slow work, the
stages write into a build folder that `atomic_path` makes beside it, the
report (with the stages' wall and CPU times) is written last, and the
folder replaces `--out` in one rename. An error or an interrupt at any
stage leaves `--out` as it was.
"""

import os
import resource
import sys
import time

from keras_lowrank.runs.progress import Progress
from keras_lowrank.runs.report_files import write_json
from keras_lowrank.runs.run_folder import REPORT_FILE
from keras_lowrank.runs.run_folder import is_run_folder
from keras_lowrank.utils.atomic import atomic_path
from keras_lowrank.utils.atomic import check_target


def check_out(out):
    """Refuses, before any slow work, an `out` a run may not replace.

    Raises:
        ValueError: `out` is a file, or a folder holding anything but an
            earlier run's files (`run_folder.is_run_folder`).
    """
    check_target(out, directory=True, replaceable=is_run_folder)


def run_in_build_folder(out, stages, *, log, summary) -> dict:
    """Runs `stages` in a build folder, writes the report, moves it to `out`.

    Args:
        out: str. The run folder to write (replacing an earlier run's).
        stages: callable `(build, progress) -> report`: the task's stages,
            writing their files into the folder `build` (naming them by
            their place in `out`), each announced through `progress`
            (a `Progress`).
        log: callable taking one str. Where the stage lines go.
        summary: callable `report -> str`: the lines printed at the end.

    Returns:
        The report, as written to `<out>/report.json`, with
        `stage_seconds`, `stage_cpu_seconds`, `total_seconds` and
        `peak_rss_bytes` added (`peak_rss_bytes`: the process's largest
        resident set so far, `getrusage(RUSAGE_SELF).ru_maxrss`; for a
        `keras-lowrank finetune` command that is the run's, for a run
        called in a longer process it may be an earlier peak).

    Example:
    ```python
    report = run_in_build_folder("runs/x", my_stages, log=print,
                                 summary=my_summary)
    ```
    """
    progress = Progress(log)
    start = time.perf_counter()
    with atomic_path(out, directory=True, replaceable=is_run_folder) as build:
        os.mkdir(build)
        report = stages(build, progress)
        # Added after the report stage, so that they hold its time.
        report["stage_seconds"] = dict(progress.seconds)
        report["stage_cpu_seconds"] = dict(progress.cpu_seconds)
        report["total_seconds"] = time.perf_counter() - start
        report["peak_rss_bytes"] = peak_rss_bytes()
        write_json(report, os.path.join(build, REPORT_FILE))
    log("")
    log(summary(report))
    return report


def peak_rss_bytes() -> int:
    """The process's peak resident set size so far, in bytes."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux counts kilobytes, macOS bytes.
    return int(peak if sys.platform == "darwin" else peak * 1024)
