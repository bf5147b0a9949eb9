"""Tracing a Keras model into ops LiteRT's 16x8 quantizer can handle.

LiteRT's int16-activation quantizer (`EXPERIMENTAL_TFLITE_BUILTINS_
ACTIVATIONS_INT16_WEIGHTS_INT8`) fails on two patterns the TensorFlow
backend of Keras puts into every keras-hub text model:

- `ops.take` (embedding lookups) guards its indices with
  `where(i < 0, i + n, i)`; the quantizer tries to quantize those int32 ops
  and stops ("Max and min for dynamic tensors should be recorded").
- `ops.moments` (layer normalization) is `tf.nn.moments`, whose variance is
  a SQUARED_DIFFERENCE op; the quantizer makes it int16 although LiteRT has
  no int16 kernel for it ("SquaredDifference only supports FLOAT32 and
  INT32").
- A masked `Softmax` (attention) puts -1e9 where the mask is off. One
  int16 scale then spans 1e9: every real attention score rounds to 0, and
  the tiny BERT loses 25 points of accuracy.

`int16_friendly_tracing()` swaps the two TensorFlow-backend functions while
a serving function is traced: `take` on an integer index tensor along
axis 0 becomes a plain `tf.gather` (token ids are never negative; export
checks sample and calibration ids), and `moments` computes the variance as
the mean of squared deviations (SUB, MUL, MEAN, which have int16 kernels),
and masked scores become `MASKED_SCORE` (-100: exp(-100) is 0 in float32
next to any attention score above -10, and int16 then resolves scores to
0.003). The same function, up to float rounding; export verifies it. Where
Keras keeps the three functions is private: `keras_lowrank._compat.keras`
reaches them (`backend_take`, `backend_moments`, `replaced_backend_functions`),
and `tests/exporters/test_int16_tracing.py` checks that the traced model
computes what Keras computes.
"""

import contextlib

from keras_lowrank._compat import keras as keras_compat
from keras_lowrank.utils.optional import tensorflow as tf

MASKED_SCORE = -100.0


@contextlib.contextmanager
def int16_friendly_tracing():
    """Within: Keras' `take`, `moments` and masked softmax trace as described."""
    take, moments = keras_compat.backend_take(), keras_compat.backend_moments()

    def plain_take(x, indices, axis=None):
        if axis == 0 and isinstance(indices, tf.Tensor) and indices.dtype.is_integer:
            return tf.gather(tf.convert_to_tensor(x), indices, axis=0)
        return take(x, indices, axis=axis)

    def mean_square_moments(x, axes, keepdims=False, synchronized=False):
        x = tf.convert_to_tensor(x)
        if synchronized or x.dtype != tf.float32:
            return moments(x, axes, keepdims=keepdims, synchronized=synchronized)
        mean = tf.reduce_mean(x, axis=axes, keepdims=True)
        centered = x - mean
        variance = tf.reduce_mean(centered * centered, axis=axes, keepdims=keepdims)
        if not keepdims:
            mean = tf.squeeze(mean, axis=axes)
        return mean, variance

    def small_mask_value(dtype):
        return MASKED_SCORE

    with keras_compat.replaced_backend_functions(
        take=plain_take, moments=mean_square_moments, mask_value=small_mask_value
    ):
        yield
