"""Child: this machine's TensorFlow GEMM throughput, the yardstick of a step.

A `(m, k) @ (k, n)` matmul in a `tf.function`, timed `gemm_repeats` times
after two untimed calls, per dtype. The default shape is a MiniLM
feed-forward product at batch 32 x 128 tokens (4096 x 384 by 384 x 1536),
so the figure is what the step's own largest GEMMs can reach on these
cores with TensorFlow's default thread pools. The report divides each
configuration's analytic FLOPs per second (`flops`) by the float32 median
and by its best repeat (`gflops_best`: a median moved 17% between two
idle runs).
"""

import statistics
import time

from benchmarks import child


def gemm_throughput(m, k, n, repeats, dtype="float32", seed=0):
    """Times `repeats` matmuls of `(m, k) @ (k, n)` in `dtype`.

    Returns only a scalar of the product, so no copy of it is timed.

    Args:
        m, k, n: int. The shapes.
        repeats: int. Timed calls (after two untimed ones: tracing, warm-up).
        dtype: str. A TensorFlow dtype name, e.g. "float32", "bfloat16".
        seed: int. Seed of the random operands.

    Returns:
        `{"flops": 2·m·k·n, "seconds": [...], "median_s",
        "gflops_median", "gflops_best"}`.
    """
    import tensorflow as tf

    generator = tf.random.Generator.from_seed(seed)
    a = tf.cast(generator.normal((m, k)), dtype)
    b = tf.cast(generator.normal((k, n)), dtype)

    @tf.function
    def product():
        return tf.matmul(a, b)[0, 0]

    product().numpy()
    product().numpy()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        product().numpy()
        seconds.append(time.perf_counter() - start)
    flops = 2 * m * k * n
    median = statistics.median(seconds)
    return {
        "flops": flops,
        "seconds": seconds,
        "median_s": median,
        "gflops_median": flops / median / 1e9,
        "gflops_best": flops / min(seconds) / 1e9,
    }


def measure(settings, config, work):
    import tensorflow as tf

    m, k, n = settings.gemm_shape
    return {
        "shape": [m, k, n],
        "repeats": settings.gemm_repeats,
        "dtypes": {dtype: gemm_throughput(m, k, n, settings.gemm_repeats, dtype,
                                          settings.seed)
                   for dtype in settings.gemm_dtypes},
        "threads": {
            "intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
        },
    }


if __name__ == "__main__":
    child.main(measure)
