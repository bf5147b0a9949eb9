"""Gradients that stay inside LiteRT's builtin ops.

TensorFlow's gradient of a strided slice is `StridedSliceGrad`, which LiteRT
has only as a Flex op. Every keras-hub model slices on the way to its loss
(BERT's `[CLS]` row `x[:, 0, :]`, the rotary embedding's halves), so a
trainable artifact would need the Flex delegate, which phones lack by
default. `builtin_gradients()` swaps that gradient, for the ops made inside
it, for an equal one made of builtins: the slice of an index grid says where
each sliced element came from, and `scatter_nd` sends the incoming gradient
back there (every input shape is static in a trainable artifact).

The gradient of `Tile` (keras-hub's `repeat` of grouped key/value heads) is
a sum over a reshape to twice the rank, 10 dimensions for a rank-5 tile,
which XNNPACK (LiteRT's default CPU delegate on phones) refuses to run; here
it sums one tiled axis at a time, in at most 4 dimensions.
"""

import contextlib

from keras_lowrank.utils.optional import tensorflow as tf

_SLICE_GRADIENT = "KerasLowrankStridedSliceGrad"
_TILE_GRADIENT = "KerasLowrankTileGrad"
_registered = False


def _strided_slice_gradient(op, grad):
    """The gradient of `StridedSlice` by `scatter_nd` over an index grid."""
    source = op.inputs[0]
    begin, end, strides = op.inputs[1:4]
    shape = tf.shape(source)
    size = tf.size(source)
    positions = tf.strided_slice(
        tf.reshape(tf.range(size), shape), begin, end, strides,
        begin_mask=op.get_attr("begin_mask"),
        end_mask=op.get_attr("end_mask"),
        ellipsis_mask=op.get_attr("ellipsis_mask"),
        new_axis_mask=op.get_attr("new_axis_mask"),
        shrink_axis_mask=op.get_attr("shrink_axis_mask"),
    )
    flat = tf.scatter_nd(
        tf.reshape(positions, [-1, 1]), tf.reshape(grad, [-1]), tf.reshape(size, [1]))
    return [tf.reshape(flat, shape), None, None, None]


def _tile_gradient(op, grad):
    """The gradient of `Tile`: each tiled axis summed in turn, static shapes."""
    shape = op.inputs[0].shape.as_list()
    tiled = op.outputs[0].shape.as_list()
    if None in shape or None in tiled:
        raise ValueError(
            "A trainable artifact needs static shapes; a Tile op "
            f"({op.name}) tiles shape {shape} to {tiled}.")
    multiples = [t // s for t, s in zip(tiled, shape)]
    current = list(grad.shape.as_list())
    for axis, (size, times) in enumerate(zip(shape, multiples)):
        if times == 1:
            continue
        before = int(_product(current[:axis]))
        after = int(_product(current[axis + 1:]))
        grad = tf.reduce_sum(tf.reshape(grad, [before, int(times), size, after]), axis=1)
        current[axis] = size
        grad = tf.reshape(grad, current)
    return [grad, None]


def _product(values):
    result = 1
    for value in values:
        result *= value
    return result


@contextlib.contextmanager
def builtin_gradients():
    """Inside a traced `tf.function`: ops made here differentiate in builtins.

    `tf.gradients` (not `tf.GradientTape`, which ignores overrides) then
    uses the gradients above for them.
    """
    global _registered
    if not _registered:
        tf.RegisterGradient(_SLICE_GRADIENT)(_strided_slice_gradient)
        tf.RegisterGradient(_TILE_GRADIENT)(_tile_gradient)
        _registered = True
    graph = tf.compat.v1.get_default_graph()
    overrides = {"StridedSlice": _SLICE_GRADIENT, "Tile": _TILE_GRADIENT}
    with graph.gradient_override_map(overrides):
        yield
