"""`LoRAEmbedding`: a low-rank delta on a frozen `keras.layers.Embedding`."""

import keras
from keras import ops

from keras_lowrank.layers.lora_adapter import LoRAAdapter
from keras_lowrank.layers.routing import current_routing


@keras.saving.register_keras_serializable(package="keras_lowrank")
class LoRAEmbedding(LoRAAdapter):
    """Wraps an `Embedding` table: rows of `E + s·A·B`.

    `A` is `(vocab, r)` and `B` is `(r, dim)`: a lookup gathers the ids' rows
    of `A` (dropout acts on those, in training) and expands them by `B`, so a
    step costs `batch·seq·r·dim`, never a `(vocab, dim)` table. Large
    recommender tables are the classic case: a rank-8 delta on a 1M × 64
    table trains 8.5M instead of 64M values. keras-hub's tied
    `ReversibleEmbedding` also works in reverse (`reverse=True`), where
    the output projection uses the same adapted table.

    Args:
        layer: keras.layers.Embedding. The table to adapt.
        rank: int. Rank `r`, from 1 to min(vocab, dim).
        alpha: float. Scale numerator; `s = alpha / rank`. Defaults to rank.
        dropout: float in [0, 1). Dropout on the gathered rows of `A`, in
            training only.
        use_rslora: bool. Use `s = alpha / sqrt(rank)`.
        variant: str. `"lora"` (variants that need a per-output norm,
            such as DoRA, do not apply to a lookup table).
        a_initializer: initializer of `A`. Defaults to `"he_uniform"`.
        b_initializer: initializer of `B`. Defaults to `"zeros"`, so the
            outputs equal the table's at init.
        pissa_rank: int or None. Set by `LoRAConfig(init="pissa")`: the
            wrapped kernel then holds `W` minus its top-`pissa_rank` singular
            part, so that adapter files can rebuild it. Leave it None.
        **kwargs: base layer arguments; `name` defaults to the layer's.

    Example:
    ```python
    table = keras.layers.Embedding(10_000, 64)
    table.build()
    lora = klr.LoRAEmbedding(table, rank=8)
    vectors = lora(keras.ops.array([[1, 2, 3]]))
    ```
    """

    wrapped_class = keras.layers.Embedding
    kernel_name = "embeddings"
    # keras-hub's tied embedding is Keras' ReversibleEmbedding.
    reproduces = (keras.layers.ReversibleEmbedding,)

    def call(self, inputs, reverse=False, training=None):
        if reverse:
            return self._reverse(inputs)
        return super().call(inputs, training=training)

    def base_product(self, inputs):
        if self.layer.quantization_mode is not None:
            # Keras' own lookup dequantizes the gathered rows only.
            return self.layer.quantized_call(inputs)
        return ops.take(self.layer.embeddings, ops.cast(inputs, "int32"), axis=0)

    def factor_product(self, inputs, training=None, view=None):
        # Gathers the ids' rows of A: a step never forms a (vocab, dim) table.
        view = self if view is None else view
        rows = ops.take(view.lora_a, ops.cast(inputs, "int32"), axis=0)
        if view.dropout_layer is not None:
            rows = view.dropout_layer(rows, training=training)
        return ops.matmul(rows, view.lora_b) * view.scale  # (..., dim)

    def finish(self, outputs):
        return ops.cast(outputs, self.compute_dtype)

    def _reverse(self, inputs):
        """Logits against the adapted table, for tied output projections."""
        layer = self.layer
        if not getattr(layer, "tie_weights", False):
            return layer(inputs, reverse=True)
        kernel = ops.transpose(layer.embeddings)
        reverse_dtype = getattr(layer, "reverse_dtype", None)
        cast = (lambda x: x) if reverse_dtype is None else (
            # As the wrapped layer: logits in their own (often float32) dtype.
            lambda x: ops.cast(x, reverse_dtype)
        )
        inputs = cast(inputs)
        logits = ops.matmul(inputs, cast(kernel))
        route = current_routing()
        names = self.active if route is None else route[1]
        for position, name in enumerate(names):
            if name not in self.adapter_names:
                continue
            view = self.view(name)
            hidden = ops.matmul(inputs, ops.transpose(cast(view.lora_b)))  # (..., rank)
            delta = ops.matmul(hidden, ops.transpose(cast(view.lora_a))) * view.scale
            if route is not None:  # (batch,) -> (batch, 1, ..., 1)
                rows = ops.cast(ops.equal(route[0], position), delta.dtype)
                delta = ops.reshape(rows, (-1,) + (1,) * (len(delta.shape) - 1)) * delta
            logits = logits + delta
        soft_cap = getattr(layer, "logit_soft_cap", None)
        if soft_cap is not None:
            logits = ops.multiply(ops.tanh(ops.divide(logits, soft_cap)), soft_cap)
        return logits
