"""`LoRAAdapter`: what the three LoRA layers share.

A LoRA layer wraps a (possibly pretrained) layer, freezes it, and adds a
trainable low-rank delta `s·A·B` to its kernel, where `A` is
`(fan_in, rank)`, `B` is `(rank, fan_out)` and `s = alpha / rank`
(`alpha / sqrt(rank)` with rsLoRA). The delta in the kernel's own shape is
computed in exactly one place, `delta_kernel()`; `merge()` and export use it,
and `call()` applies the same factors and the same `scale` without forming it.
"""

import math
import numbers

import keras
from keras import ops



class LoRAAdapter(keras.layers.Layer):
    """Base class of `LoRADense`, `LoRAEinsumDense` and `LoRAEmbedding`.

    Subclasses set `wrapped_class` and the name of the wrapped kernel
    (`kernel_name`), and implement `layout_of(layer)` and `call`.
    """

    wrapped_class = None
    kernel_name = "kernel"

    def __init__(
        self,
        layer,
        rank=8,
        alpha=None,
        dropout=0.0,
        use_rslora=False,
        a_initializer="he_uniform",
        b_initializer="zeros",
        pissa_rank=None,
        **kwargs,
    ):
        self._check_arguments(layer, rank, alpha, dropout)
        _check_pissa_rank(type(self).__name__, layer, pissa_rank)
        kwargs.setdefault("name", layer.name)
        kwargs.setdefault("dtype", layer.dtype_policy)
        super().__init__(**kwargs)
        self.layer = layer
        self.rank = int(rank)
        self.alpha = float(alpha) if alpha is not None else float(rank)
        self.dropout = float(dropout)
        self.use_rslora = bool(use_rslora)
        self.a_initializer = keras.initializers.get(a_initializer)
        self.b_initializer = keras.initializers.get(b_initializer)
        # Set by PiSSA init: the wrapped kernel holds `W` minus its top
        # `pissa_rank` singular part, which the factors started from.
        self.pissa_rank = None if pissa_rank is None else int(pissa_rank)
        self.supports_masking = layer.supports_masking
        self.dropout_layer = (
            keras.layers.Dropout(self.dropout, name="lora_dropout")
            if self.dropout > 0
            else None
        )
        self.layer.trainable = False
        if layer.built:
            self.build(_built_input_shape(layer))

    # === Validation ===

    @classmethod
    def _check_arguments(cls, layer, rank, alpha, dropout):
        """One guard per precondition; raises before anything is modified."""
        name = cls.__name__
        if isinstance(layer, LoRAAdapter):
            raise ValueError(
                f"{name} received layer '{layer.name}', which is already a "
                f"{type(layer).__name__}. Adapters do not stack: merge it "
                "first with `layer.merge()`, or adapt the original layer."
            )
        if not isinstance(layer, cls.wrapped_class):
            from keras_lowrank.layers import adapter_class_for

            fits = adapter_class_for(layer)
            hint = (
                f" Use {fits.__name__} for it."
                if fits is not None
                else " LoRA layers exist for Dense, EinsumDense and Embedding."
            )
            raise ValueError(
                f"{name} wraps a keras.layers.{cls.wrapped_class.__name__}. "
                f"Received: layer '{getattr(layer, 'name', layer)}' of class "
                f"{type(layer).__name__}.{hint}"
            )
        if isinstance(rank, bool) or not isinstance(rank, numbers.Integral):
            raise ValueError(
                f"{name}(layer='{layer.name}') expected `rank` to be a positive "
                f"integer. Received: rank={rank!r}"
            )
        if rank < 1:
            raise ValueError(
                f"{name}(layer='{layer.name}') expected `rank` to be a positive "
                f"integer. Received: rank={rank}"
            )
        if alpha is not None and (
            isinstance(alpha, bool)
            or not isinstance(alpha, numbers.Real)
            or not alpha > 0
        ):
            raise ValueError(
                f"{name}(layer='{layer.name}') expected `alpha` > 0 (or None "
                f"for alpha = rank). Received: alpha={alpha!r}"
            )
        if not isinstance(dropout, numbers.Real) or not 0 <= dropout < 1:
            raise ValueError(
                f"{name}(layer='{layer.name}') expected `dropout` in [0, 1). "
                f"Received: dropout={dropout!r}"
            )
        if getattr(layer, "lora_enabled", False):
            raise ValueError(
                f"{name} received layer '{layer.name}' with Keras' own LoRA "
                "enabled (`layer.enable_lora`). Use one or the other."
            )
        if getattr(layer, "quantization_mode", None) is not None:
            raise ValueError(
                f"{name} received layer '{layer.name}' quantized as "
                f"'{layer.quantization_mode}'. Adapt the float layer, then "
                "quantize at export."
            )
        if layer.built:
            cls._check_rank_fits(layer, rank)

    @classmethod
    def _check_rank_fits(cls, layer, rank):
        layout = cls.layout_of(layer)
        limit = min(layout.fan_in, layout.fan_out)
        if rank > limit:
            raise ValueError(
                f"{cls.__name__}(layer='{layer.name}'): rank={rank} is larger "
                f"than min(fan_in, fan_out) = min({layout.fan_in}, "
                f"{layout.fan_out}) = {limit}, so the delta could not be low "
                f"rank. Use a rank from 1 to {limit}."
            )

    @classmethod
    def layout_of(cls, layer):
        """The `KernelLayout` of the wrapped layer's kernel."""
        raise NotImplementedError

    @property
    def trainable(self):
        return self._trainable

    @trainable.setter
    def trainable(self, value):
        # `model.trainable = True` reaches every sublayer: keep the base frozen.
        keras.layers.Layer.trainable.fset(self, value)
        if "layer" in vars(self):
            self.layer.trainable = False

    # === Weights ===

    def build(self, input_shape=None):
        if not self.layer.built:
            self.layer.build(input_shape)
            self._check_rank_fits(self.layer, self.rank)
        self.layout = self.layout_of(self.layer)
        self.lora_a = self.add_weight(
            name="lora_a",
            shape=(self.layout.fan_in, self.rank),
            initializer=self.a_initializer,
        )
        self.lora_b = self.add_weight(
            name="lora_b",
            shape=(self.rank, self.layout.fan_out),
            initializer=self.b_initializer,
        )
        self.built = True

    @property
    def scale(self):
        """`alpha / rank`, or `alpha / sqrt(rank)` with rsLoRA."""
        if self.use_rslora:
            return self.alpha / math.sqrt(self.rank)
        return self.alpha / self.rank

    @property
    def base_kernel(self):
        return getattr(self.layer, self.kernel_name)

    def delta_kernel(self):
        """`s·A·B` in the shape of the wrapped kernel, in float32."""
        a = ops.cast(self.lora_a, "float32")
        b = ops.cast(self.lora_b, "float32")
        return self.layout.from_matrix(ops.matmul(a, b) * self.scale)

    def _adapter_inputs(self, inputs, training):
        if self.dropout_layer is None:
            return inputs
        return self.dropout_layer(inputs, training=training)

    # === Merge ===

    def merge(self):
        """A new plain layer of the wrapped class with kernel `W + s·A·B`.

        It has the wrapped layer's config and name; it is trainable.

        Returns:
            A new layer of the wrapped layer's class. This adapter is left
            untouched.
        """
        layer = self.layer
        config = layer.get_config()
        config["trainable"] = True
        merged = type(layer).from_config(config)
        merged.build(_built_input_shape(layer))
        kernel = ops.convert_to_numpy(
            ops.cast(self.base_kernel, "float32") + self.delta_kernel()
        )
        kernel_var = getattr(layer, f"_{self.kernel_name}", None)
        if kernel_var is None:
            kernel_var = self.base_kernel
        values = [
            kernel.astype(v.dtype) if v is kernel_var else v.numpy()
            for v in layer.weights
        ]
        merged.set_weights(values)
        return merged

    # === Config ===

    def compute_mask(self, inputs, mask=None):
        return self.layer.compute_mask(inputs, mask)

    def get_config(self):
        return {
            **super().get_config(),
            "layer": keras.saving.serialize_keras_object(self.layer),
            "rank": self.rank,
            "alpha": self.alpha,
            "dropout": self.dropout,
            "use_rslora": self.use_rslora,
            "a_initializer": keras.initializers.serialize(self.a_initializer),
            "b_initializer": keras.initializers.serialize(self.b_initializer),
            "pissa_rank": self.pissa_rank,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        layer = keras.saving.deserialize_keras_object(config.pop("layer"))
        return cls(layer, **config)


def _check_pissa_rank(name, layer, pissa_rank):
    if pissa_rank is None:
        return
    if (
        isinstance(pissa_rank, bool)
        or not isinstance(pissa_rank, numbers.Integral)
        or pissa_rank < 1
    ):
        raise ValueError(
            f"{name}(layer='{layer.name}') expected `pissa_rank` to be None or "
            f"a positive integer. Received: pissa_rank={pissa_rank!r}"
        )


def _built_input_shape(layer):
    """The input shape a built layer was built with, if Keras recorded it."""
    build_config = layer.get_build_config() or {}
    return build_config.get("input_shape")
