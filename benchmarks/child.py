"""What every measurement subprocess shares (no TensorFlow, no torch here).

A child is `python -m benchmarks.<module> --settings FILE --out FILE
[--config NAME]`; it writes one JSON object to `--out`, always with its own
peak RSS, so memory is per configuration.
"""

import argparse
import json
import os
import resource
import statistics
import sys
import time
import traceback

from benchmarks.settings import Settings


def main(measure):
    """Parses the child arguments, runs `measure(settings, config, work)`.

    The JSON written holds `measure`'s dict plus `peak_rss_bytes` and
    `wall_s`; on an exception, `error` and `traceback` instead (exit 1).
    """
    parser = argparse.ArgumentParser()
    parser.add_argument("--settings", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--config", default=None)
    args = parser.parse_args()
    with open(args.settings) as file:
        settings = Settings.from_json(file.read())
    work = os.path.dirname(os.path.abspath(args.out))
    start = time.perf_counter()
    try:
        result = measure(settings, args.config, work)
        status = 0
    except Exception as error:  # reported in the results, not lost
        traceback.print_exc()
        result = {"error": f"{type(error).__name__}: {error}",
                  "traceback": traceback.format_exc()[-4000:]}
        status = 1
    result["peak_rss_bytes"] = peak_rss_bytes()
    result["wall_s"] = round(time.perf_counter() - start, 2)
    write_json(args.out, result)
    sys.exit(status)


def peak_rss_bytes():
    """This process's peak resident set size (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def current_rss_bytes():
    with open("/proc/self/statm") as file:
        return int(file.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def cpu_seconds(who=resource.RUSAGE_SELF):
    """`{"user", "system"}` CPU seconds so far: this process (all threads),
    or with `resource.RUSAGE_CHILDREN` its finished children."""
    usage = resource.getrusage(who)
    return {"user": usage.ru_utime, "system": usage.ru_stime}


def cpu_since(before, who=resource.RUSAGE_SELF):
    """The `cpu_seconds` spent since `before` (one of its results)."""
    now = cpu_seconds(who)
    return {key: now[key] - before[key] for key in now}


def time_steps(step, count):
    """Times `count` calls of `step`, and the process's CPU time over them.

    Returns:
        `(seconds, cpu)`: wall seconds per call, and the `cpu_since` of
        the whole loop (user and system, every thread).
    """
    before = cpu_seconds()
    seconds = []
    for _ in range(count):
        start = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - start)
    return seconds, cpu_since(before)


def summarize(seconds):
    """Median, min, max and mean of timings in seconds."""
    return {
        "median_s": statistics.median(seconds),
        "min_s": min(seconds),
        "max_s": max(seconds),
        "mean_s": statistics.fmean(seconds),
        "n": len(seconds),
    }


def time_calls(functions, repeats):
    """Times `{name: fn}` round robin, `repeats` calls each.

    Interleaving spreads slow spells of a shared machine over every function
    alike, which is what makes their ratios fair. The order rotates each
    round so no function always runs first.

    Returns:
        `{name: [seconds, ...]}`.
    """
    names = list(functions)
    times = {name: [] for name in names}
    for i in range(repeats):
        for name in names[i % len(names):] + names[:i % len(names)]:
            start = time.perf_counter()
            functions[name]()
            times[name].append(time.perf_counter() - start)
    return times


def write_json(path, value):
    """Writes `value` as JSON atomically (temporary file, then rename)."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as file:
        json.dump(value, file, indent=2, sort_keys=True)
        file.write("\n")
    os.replace(tmp, path)
