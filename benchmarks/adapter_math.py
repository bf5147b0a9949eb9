"""Micro-benchmark: one MiniLM query projection, frozen vs with LoRA.

Forward + backward (gradients of the input and of every trainable weight,
as in a training step) of the `(384 -> 12 x 32)` query `EinsumDense`:

- `frozen`: the plain layer, frozen: the cost every configuration pays.
- `klr`: `klr.LoRAEinsumDense` as it is (einsums on the 3-D input).
- `klr_flat`: the same math with the input flattened to 2-D,
  `(batch·seq, 384) @ A @ B`, reshaped back: a proposed formulation.
- `keras`: Keras' own `EinsumDense.enable_lora` (forms `W + A·B`).

`variant - frozen` is what one adapter adds to a training step; MiniLM has
12 of them (query and value in 6 blocks).
"""

from benchmarks import child

HIDDEN, HEADS, HEAD_DIM = 384, 12, 32


def _query_layer(seq):
    import keras

    layer = keras.layers.EinsumDense(
        "abc,cde->abde", output_shape=(seq, HEADS, HEAD_DIM), bias_axes="de"
    )
    layer.build((None, seq, HIDDEN))
    return layer


def _flat_call(adapter):
    """`adapter`'s output with the factors applied to a 2-D view of `x`."""
    from keras import ops

    layer = adapter.layer

    def call(x):
        outputs = ops.einsum(layer.equation, x, layer.kernel)
        hidden = ops.matmul(ops.reshape(x, (-1, HIDDEN)), adapter.lora_a)
        delta = ops.reshape(ops.matmul(hidden, adapter.lora_b), ops.shape(outputs))
        return outputs + delta * adapter.scale + layer.bias

    return call, adapter.trainable_variables


def microbench(batch, seq, rank, repeats):
    """Median ms of forward + backward per variant, and overhead vs frozen."""
    import tensorflow as tf

    import keras_lowrank as klr

    frozen = _query_layer(seq)
    frozen.trainable = False
    adapter = klr.LoRAEinsumDense(_query_layer(seq), rank=rank)
    adapter.lora_b.assign(tf.random.normal(adapter.lora_b.shape, stddev=0.02))
    builtin = _query_layer(seq)
    builtin.enable_lora(rank)
    variants = {
        "frozen": (frozen, []),
        "klr": (adapter, adapter.trainable_variables),
        "klr_flat": _flat_call(adapter),
        "keras": (builtin, builtin.trainable_variables),
    }
    x = tf.random.normal((batch, seq, HIDDEN))
    upstream = tf.random.normal((batch, seq, HEADS, HEAD_DIM))

    def fwd_bwd(call, weights):
        @tf.function(jit_compile=False)
        def run():
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = tf.reduce_sum(call(x) * upstream)
            return tape.gradient(loss, [x, *weights])

        return lambda: [g.numpy() for g in run()]

    functions = {name: fwd_bwd(*v) for name, v in variants.items()}
    for function in functions.values():
        function()
    times = child.time_calls(functions, repeats)
    median_ms = {k: child.summarize(v)["median_s"] * 1e3 for k, v in times.items()}
    flat_diff = float(tf.reduce_max(tf.abs(
        variants["klr_flat"][0](x) - adapter(x)
    )))
    return {
        "shape": [batch, seq, HIDDEN],
        "rank": rank,
        "median_ms": median_ms,
        "overhead_ms": {
            k: v - median_ms["frozen"] for k, v in median_ms.items() if k != "frozen"
        },
        "klr_flat_max_abs_diff": flat_diff,
    }
