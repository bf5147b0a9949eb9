"""Child: this machine's memory bandwidth, STREAM's triad and copy in numpy.

The triad is STREAM's: `a = b + s·c` on float64 arrays far beyond the
last-level cache (each array 4x the largest cache, at least 256 MiB,
unless `settings.bandwidth_array_bytes` says otherwise). numpy would
compute `b + s*c` in two passes through a temporary as large as the
arrays; here the arrays are cut into blocks of 64 Ki elements (512 KiB)
whose temporary stays in L2, so memory sees what STREAM's loop makes it
see: `b` and `c` read, `a` written, once each. The work is split over
as many threads as the process may use (numpy releases the GIL in its
loops), as LiteRT decodes on every core.

Bytes are counted as STREAM counts them: 3 arrays x 8 bytes x n per
triad (`triad_bytes`). The CPU also reads `a` before writing it
(write-allocate) unless it streams the stores, so the traffic is closer
to 4 x 8 x n: `gb_per_s_best_write_allocate` counts that way.

Each round also times STREAM's copy, `a = c` (`np.copyto`, one call per
thread, 2 x 8 x n bytes): numpy's triad runs two ufunc loops with
ordinary stores, while a large copy is one `memcpy`, which glibc runs
with non-temporal stores above a size threshold (no write-allocate
read). On the 2-core bench machine the copy moved over twice what the
triad did (22 vs 9 GB/s best, under a load average of 6;
docs/decode_bandwidth.md), and LiteRT decoded SmolLM2 at an effective
16 GB/s of weights, so the triad alone is no upper bound there: the
decode bound (`decode_bound.py`) uses the higher of the two kernels'
best runs.
"""

import os
import statistics
import threading
import time

import numpy as np

from benchmarks import child

BLOCK = 64 * 1024  # elements: a 512 KiB float64 temporary, L2-resident
MIN_ARRAY_BYTES = 256 * 2**20
CACHE_MULTIPLE = 4  # STREAM: each array at least 4x the caches


def triad_bytes(n, write_allocate=False) -> int:
    """Bytes one triad over `n` float64 elements moves, as STREAM counts them.

    Args:
        n: int. Elements per array.
        write_allocate: bool. Also count the read of `a` before its write.

    Returns:
        `3·8·n`, or `4·8·n` with `write_allocate`.
    """
    return (4 if write_allocate else 3) * 8 * n


def last_level_cache_bytes():
    """The largest cache of cpu0 (Linux sysfs), or None where unknown."""
    sizes = []
    folder = "/sys/devices/system/cpu/cpu0/cache"
    try:
        names = os.listdir(folder)
    except OSError:
        return None
    units = {"K": 2**10, "M": 2**20, "G": 2**30}
    for name in names:
        try:
            with open(os.path.join(folder, name, "size")) as file:
                text = file.read().strip()
        except OSError:
            continue
        if text and text[-1] in units:
            sizes.append(int(text[:-1]) * units[text[-1]])
        elif text.isdigit():
            sizes.append(int(text))
    return max(sizes) if sizes else None


def default_array_bytes():
    """Bytes of each array: 4x the last-level cache, at least 256 MiB."""
    cache = last_level_cache_bytes() or 0
    return max(MIN_ARRAY_BYTES, CACHE_MULTIPLE * cache)


def _triad_range(a, b, c, scalar, start, stop):
    temporary = np.empty(BLOCK)
    for i in range(start, stop, BLOCK):
        j = min(i + BLOCK, stop)
        t = temporary[:j - i]
        np.multiply(c[i:j], scalar, out=t)
        np.add(b[i:j], t, out=a[i:j])


def _copy_range(a, c, start, stop):
    np.copyto(a[start:stop], c[start:stop])


def _split(work, n, threads):
    """Runs `work(start, stop)` over `threads` equal ranges of `range(n)`."""
    bounds = [n * k // threads for k in range(threads + 1)]
    if threads == 1:
        work(0, n)
        return
    workers = [threading.Thread(target=work, args=(bounds[k], bounds[k + 1]))
               for k in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def triad(a, b, c, scalar, threads):
    """`a[:] = b + scalar·c`, in blocks, split over `threads` threads."""
    _split(lambda start, stop: _triad_range(a, b, c, scalar, start, stop),
           len(a), threads)


def copy(a, c, threads):
    """`a[:] = c`, split over `threads` threads."""
    _split(lambda start, stop: _copy_range(a, c, start, stop), len(a), threads)


def _timed(function):
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def triad_bandwidth(array_bytes, repeats, threads=None) -> dict:
    """Times `repeats` triads on three float64 arrays of `array_bytes` each.

    One untimed triad first touches every page. Each round times a copy
    `a = c`, then a triad (so `a` ends as the triad's result).

    Args:
        array_bytes: int. Bytes of each array (rounded down to whole
            float64s).
        repeats: int. Timed triads.
        threads: int or None. Threads of each triad (None: the cores this
            process may run on).

    Returns:
        `{"n", "array_bytes", "threads", "repeats", "seconds",
        "bytes_per_triad", "gb_per_s_best", "gb_per_s_median",
        "gb_per_s_best_write_allocate", "max_abs_error", "copy": {"seconds",
        "bytes_per_copy", "gb_per_s_best", "gb_per_s_median"}}`: GB are
        1e9 bytes, counted as STREAM does (`triad_bytes`; a copy 2 x 8 x
        n); `max_abs_error` checks the last triad's result.

    Raises:
        ValueError: fewer than one element, repeat or thread.
    """
    n = array_bytes // 8
    if n < 1:
        raise ValueError(f"array_bytes must hold at least one float64. "
                         f"Received: array_bytes={array_bytes}")
    if repeats < 1:
        raise ValueError(f"repeats must be a positive integer. Received: "
                         f"repeats={repeats}")
    threads = threads or len(os.sched_getaffinity(0))
    if threads < 1:
        raise ValueError(f"threads must be a positive integer. Received: "
                         f"threads={threads}")
    scalar = 3.0
    b = np.full(n, 1.0)
    c = np.full(n, 2.0)
    a = np.zeros(n)
    triad(a, b, c, scalar, threads)
    seconds, copy_seconds = [], []
    for _ in range(repeats):
        copy_seconds.append(_timed(lambda: copy(a, c, threads)))
        seconds.append(_timed(lambda: triad(a, b, c, scalar, threads)))
    counted = triad_bytes(n)
    copied = 2 * 8 * n
    expected = 1.0 + scalar * 2.0
    return {
        "n": n,
        "array_bytes": n * 8,
        "threads": threads,
        "repeats": repeats,
        "seconds": seconds,
        "bytes_per_triad": counted,
        "gb_per_s_best": counted / min(seconds) / 1e9,
        "gb_per_s_median": counted / statistics.median(seconds) / 1e9,
        "gb_per_s_best_write_allocate":
            triad_bytes(n, write_allocate=True) / min(seconds) / 1e9,
        # min and max, not a - expected: no array-sized temporaries.
        "max_abs_error": float(max(abs(a.max() - expected), abs(a.min() - expected))),
        "copy": {"seconds": copy_seconds, "bytes_per_copy": copied,
                 "gb_per_s_best": copied / min(copy_seconds) / 1e9,
                 "gb_per_s_median": copied / statistics.median(copy_seconds) / 1e9},
    }


def measure(settings, config, work):
    array_bytes = settings.bandwidth_array_bytes or default_array_bytes()
    return {**triad_bandwidth(array_bytes, settings.bandwidth_repeats),
            "last_level_cache_bytes": last_level_cache_bytes()}


if __name__ == "__main__":
    child.main(measure)
