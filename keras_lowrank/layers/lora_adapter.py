"""`LoRAAdapter`: the one forward pass of every adapter layer.

A LoRA layer wraps a (possibly pretrained) layer, freezes it, and adds a
trainable low-rank delta `s·A·B` to its kernel, where `A` is
`(fan_in, rank)`, `B` is `(rank, fan_out)` on the kernel's matrix view
(`KernelLayout.of(layer)`) and `s = alpha / rank` (`alpha / sqrt(rank)`
with rsLoRA). Its hyperparameters are one `AdapterSpec`; how the delta
enters the outputs is its variant (`keras_lowrank.layers.variants`).

`call` is written once for every kernel: the frozen product, the factors'
product, the variant's combination, then the wrapped layer's bias and
activation. A layer kind with another kind of product (an embedding's
lookup) overrides `base_product` and `factor_product` only. The delta in the
kernel's own shape is computed in exactly one place, `delta_kernel()`;
merging (`keras_lowrank.layers.adapter_merge`) and export use it.

A layer can hold several named adapters (PEFT's `adapter_name`): the first
is the layer itself (`lora_a`, `lora_b`, `spec`), each further one an
`AdapterSlot` with its own spec and factors. `active` names the ones that
act: several plain-LoRA adapters add up; none gives the wrapped layer's
outputs bit for bit.
"""

import keras
from keras import ops

from keras_lowrank._compat import keras as keras_compat
from keras_lowrank.layers.adapter_merge import MergeableAdapter
from keras_lowrank.layers.adapter_merge import built_input_shape
from keras_lowrank.layers.adapter_registry import adapter_class_for
from keras_lowrank.layers.adapter_registry import supported_classes
from keras_lowrank.layers.adapter_slots import AdapterSlot
from keras_lowrank.layers.adapter_slots import NamedAdapters
from keras_lowrank.layers.adapter_slots import SpecView
from keras_lowrank.layers.adapter_slots import check_adapter_name
from keras_lowrank.layers.adapter_slots import new_dropout
from keras_lowrank.layers.adapter_spec import AdapterSpec
from keras_lowrank.layers.adapter_spec import check_alpha
from keras_lowrank.layers.adapter_spec import check_dropout
from keras_lowrank.layers.adapter_spec import check_rank
from keras_lowrank.layers.adapter_spec import check_scale
from keras_lowrank.layers.quantized_base import check_quantizable
from keras_lowrank.layers.quantized_base import check_quantization_mode
from keras_lowrank.layers.quantized_base import float_policy
from keras_lowrank.layers.quantized_base import quantize_layer
from keras_lowrank.layers.routing import current_routing
from keras_lowrank.layers.variants import get_variant
from keras_lowrank.svd.kernel_layout import KernelLayout


class LoRAAdapter(SpecView, NamedAdapters, MergeableAdapter, keras.layers.Layer):
    """Base class of the LoRA layers (`LoRADense`, `LoRAEinsumDense`, ...).

    A layer kind is a subclass that sets `wrapped_class` (and
    `kernel_name` when the kernel is not `kernel`), registered with
    `keras_lowrank.layers.register_adapter_class`. `reproduces` lists the
    classes whose `call` the kind computes; a subclass of the wrapped class
    that overrides `call` otherwise is refused, since the adapter would
    silently drop what that `call` adds.

    Args:
        layer: the layer to adapt, built or not.
        rank, alpha, dropout, use_rslora, variant, pissa_rank: the fields of
            `AdapterSpec`, documented there.
        a_initializer: initializer of `A`. Defaults to `"he_uniform"`.
        b_initializer: initializer of `B`. Defaults to `"zeros"`, so the
            outputs equal the wrapped layer's at init.
        base_quantization: None, "int8" or "int4". Holds the frozen kernel
            in Keras' own quantized form (`layer.quantize(mode)`, in place);
            the forward pass dequantizes it
            (`keras_lowrank.layers.quantized_base`). A layer quantized
            already must be given its own mode.
        **kwargs: base layer arguments; `name` defaults to the layer's.
    """

    wrapped_class = None
    kernel_name = "kernel"
    reproduces = ()

    def __init__(
        self,
        layer,
        rank=8,
        alpha=None,
        dropout=0.0,
        use_rslora=False,
        variant="lora",
        pissa_rank=None,
        a_initializer="he_uniform",
        b_initializer="zeros",
        adapter_name="default",
        more_adapters=None,
        active=None,
        base_quantization=None,
        **kwargs,
    ):
        self._check_arguments(layer, rank, alpha, dropout, base_quantization)
        if pissa_rank is not None:
            check_rank(
                pissa_rank, "pissa_rank", f"{type(self).__name__}(layer='{layer.name}')",
                hint=" to be None or",
            )
        spec = AdapterSpec(
            rank=rank, alpha=alpha, dropout=dropout, use_rslora=use_rslora,
            variant=variant, pissa_rank=pissa_rank,
        )
        self._check_variant(layer, spec.variant)
        kwargs.setdefault("name", layer.name)
        kwargs.setdefault("dtype", float_policy(layer))  # the adapter computes in float
        super().__init__(**kwargs)
        self.layer = layer
        self.spec = spec
        self.a_initializer = keras.initializers.get(a_initializer)
        self.b_initializer = keras.initializers.get(b_initializer)
        self.supports_masking = layer.supports_masking
        self.dropout_layer = new_dropout(spec, "lora_dropout")
        self.adapter_name = check_adapter_name(adapter_name)
        self.more_specs = {
            check_adapter_name(name): (
                spec_ if isinstance(spec_, AdapterSpec) else AdapterSpec.from_dict(spec_)
            )
            for name, spec_ in (more_adapters or {}).items()
        }
        if self.adapter_name in self.more_specs:
            raise ValueError(
                f"{type(self).__name__}(layer='{layer.name}'): adapter name "
                f"{self.adapter_name!r} is given twice."
            )
        self.slot_dropouts = {
            name: new_dropout(spec_, f"lora_dropout_{name}")
            for name, spec_ in self.more_specs.items()
            if spec_.dropout > 0
        }
        self.slots = {}
        self._active = (self.adapter_name,)
        self._check_scales_fit(spec)
        self.base_quantization = base_quantization
        self.layer.trainable = False
        if layer.built:
            self.build(built_input_shape(layer))
        if active is not None:
            self.set_active(active)

    @classmethod
    def from_spec(cls, layer, spec, **kwargs):
        """An adapter on `layer` with the hyperparameters of `spec`; a base
        quantized already keeps its mode (`base_quantization`)."""
        kwargs.setdefault("base_quantization", getattr(layer, "quantization_mode", None))
        return cls(layer, **spec.to_dict(), **kwargs)

    # === Validation ===

    @classmethod
    def _check_arguments(cls, layer, rank, alpha, dropout, base_quantization=None):
        """One guard per precondition; raises before anything is modified."""
        name = cls.__name__
        if isinstance(layer, LoRAAdapter):
            raise ValueError(
                f"{name} received layer '{layer.name}', which is already a "
                f"{type(layer).__name__}. Adapters do not stack: merge it "
                "first with `layer.merge()`, or adapt the original layer."
            )
        if not isinstance(layer, cls.wrapped_class):
            fits = adapter_class_for(layer)
            hint = (
                f" Use {fits.__name__} for it."
                if fits is not None
                else f" LoRA layers exist for {supported_classes()}."
            )
            raise ValueError(
                f"{name} wraps a keras.layers.{cls.wrapped_class.__name__}. "
                f"Received: layer '{getattr(layer, 'name', layer)}' of class "
                f"{type(layer).__name__}.{hint}"
            )
        owner = f"{name}(layer='{layer.name}')"
        check_rank(rank, "rank", owner)
        if alpha is not None:
            check_alpha(alpha, "alpha", owner, hint=" (or None for alpha = rank)")
        check_dropout(dropout, owner)
        cls._check_call_reproduced(layer)
        if getattr(layer, "lora_enabled", False):
            raise ValueError(
                f"{name} received layer '{layer.name}' with Keras' own LoRA "
                "enabled (`layer.enable_lora`). Use one or the other."
            )
        check_quantization_mode(base_quantization, owner)
        if base_quantization is not None:
            check_quantizable(layer, base_quantization, owner)
        mode = getattr(layer, "quantization_mode", None)
        if mode is not None and mode != base_quantization:
            raise ValueError(
                f"{name} received layer '{layer.name}' quantized as "
                f"'{mode}' and base_quantization={base_quantization!r}. Adapt "
                f"the float layer (with base_quantization='{mode}' to hold its "
                "kernel quantized), or quantize at export."
            )
        if layer.built:
            cls._check_rank_fits(layer, rank)

    @classmethod
    def _check_call_reproduced(cls, layer):
        owner = next(c for c in type(layer).__mro__ if "call" in vars(c))
        if owner in (cls.wrapped_class, *cls.reproduces):
            return
        raise ValueError(
            f"{cls.__name__} cannot adapt layer '{layer.name}' of class "
            f"{type(layer).__name__}: it overrides `call()` of "
            f"keras.layers.{cls.wrapped_class.__name__}, and an adapter "
            "computes the plain layer's forward pass, so what that `call` "
            "adds would be silently lost (and the merged model would differ "
            "from the trained one). Leave it out with `exclude=`, or adapt "
            "the plain layers inside it."
        )

    @classmethod
    def _check_variant(cls, layer, variant_name):
        variant = get_variant(variant_name)
        if not variant.supports(cls):
            raise ValueError(
                f"{cls.__name__}(layer='{layer.name}'): the {variant.name!r} "
                f"variant does not support {cls.wrapped_class.__name__} "
                "layers. Use variant='lora' for them."
            )

    def _check_scales_fit(self, spec):
        """Each scale is finite in the dtype the layer computes in (float16)."""
        for name, spec_ in ((self.adapter_name, spec), *self.more_specs.items()):
            check_scale(
                spec_.alpha, spec_.rank, spec_.use_rslora, self.compute_dtype,
                f"{type(self).__name__}(layer='{self.layer.name}')",
                where=f"the dtype the layer computes in (dtype policy "
                f"'{self.dtype_policy.name}', adapter {name!r})",
                fix=", or build the model under the 'float32' policy",
            )

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
        return KernelLayout.of(layer)

    @property
    def trainable(self):
        return keras.layers.Layer.trainable.fget(self)

    @trainable.setter
    def trainable(self, value):
        # `model.trainable = True` reaches every sublayer: keep the base frozen.
        keras.layers.Layer.trainable.fset(self, value)
        # Not `vars(self)`: on the torch backend a sublayer lives in `_modules`.
        layer = getattr(self, "layer", None)
        if layer is not None:
            layer.trainable = False
        if value and self.built and set(self._active) != set(self.adapter_names):
            self.set_active(self._active)  # inactive adapters stay frozen

    # === Weights ===

    def build(self, input_shape=None):
        if not self.layer.built:
            self.layer.build(input_shape)
            self._check_rank_fits(self.layer, self.rank)
        if self.base_quantization is not None:
            quantize_layer(self.layer, self.base_quantization)
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
        self.variant.build(self)
        for name, spec in self.more_specs.items():
            slot = AdapterSlot(self, name, spec)
            slot.lora_a = self.add_weight(
                name=f"lora_a_{name}",
                shape=(self.layout.fan_in, spec.rank),
                initializer=self.a_initializer,
            )
            slot.lora_b = self.add_weight(
                name=f"lora_b_{name}",
                shape=(spec.rank, self.layout.fan_out),
                initializer=self.b_initializer,
            )
            slot.variant.build(slot)
            self.slots[name] = slot
        self.built = True

    @property
    def base_kernel(self):
        """The wrapped layer's kernel (its variable: never Keras' LoRA sum);
        a float32 tensor, dequantized, when the base is quantized."""
        if self.layer.quantization_mode is not None:
            return keras_compat.dequantized_kernel(self.layer)
        return keras_compat.kernel_variable(self.layer, self.kernel_name)

    def quantize_base(self, mode, hessian=None):
        """Holds the wrapped kernel in Keras' `mode` ("int8" or "int4") form,
        in place; the factors stay float. `add_adapters` calls it after
        `init="pissa"` moved the principal part out of the kernel. With
        `hessian` an int4 kernel is rounded by GPTQ (`quantize_layer`)."""
        owner = f"{type(self).__name__}(layer='{self.layer.name}')"
        check_quantization_mode(mode, owner)
        check_quantizable(self.layer, mode, owner)
        self.base_quantization = mode
        quantize_layer(self.layer, mode, hessian)

    # === Forward ===

    def call(self, inputs, training=None):
        base = self.base_product(inputs)
        route = current_routing()
        if route is not None:
            return self.finish(self._routed(inputs, base, training, *route))
        views = [self.view(name) for name in self._active]
        if len(views) == 1:
            view = views[0]
            delta = self.factor_product(inputs, training, view)
            return self.finish(view.variant.combine(view, base, delta))
        for view in views:  # plain LoRA only: the deltas add up
            base = base + self.factor_product(inputs, training, view)
        return self.finish(base)

    def _routed(self, inputs, base, training, index, names):
        """Row `i` gets the delta of adapter `names[index[i]]` (plain LoRA)."""
        for position, name in enumerate(names):
            if name not in self.adapter_names:
                continue
            delta = self.factor_product(inputs, training, self.view(name))
            rows = ops.cast(ops.equal(index, position), delta.dtype)  # (batch,)
            base = base + ops.reshape(rows, (-1,) + (1,) * (len(delta.shape) - 1)) * delta
        return base

    def base_product(self, inputs):
        """The frozen kernel applied to `inputs`, before bias."""
        if self.layer.quantization_mode is not None:
            kernel = ops.cast(self.base_kernel, self.compute_dtype)  # dequantized
            return self.layout.apply_kernel(inputs, kernel)
        return self.layout.apply_kernel(inputs, self.layer.kernel)

    def factor_product(self, inputs, training=None, view=None):
        """`s·(dropout(x)·A)·B` of adapter `view` (default: the first one),
        contracted as the kernel is; its variant may put weights between
        the factors (`AdapterVariant.factor_product`)."""
        view = self if view is None else view
        if view.dropout_layer is not None:
            inputs = view.dropout_layer(inputs, training=training)
        return view.variant.factor_product(view, inputs, training)

    def finish(self, outputs):
        """The wrapped layer's bias and activation."""
        layer = self.layer
        if getattr(layer, "bias", None) is not None:
            outputs = ops.add(outputs, layer.bias)
        if getattr(layer, "activation", None) is not None:
            outputs = layer.activation(outputs)
        return outputs

    # === Config ===

    def compute_mask(self, inputs, mask=None):
        return self.layer.compute_mask(inputs, mask)

    def get_config(self):
        return {
            **super().get_config(),
            "layer": keras.saving.serialize_keras_object(self.layer),
            **self.spec.to_dict(),
            "a_initializer": keras.initializers.serialize(self.a_initializer),
            "b_initializer": keras.initializers.serialize(self.b_initializer),
            "adapter_name": self.adapter_name,
            "more_adapters": {n: s.to_dict() for n, s in self.more_specs.items()},
            "active": list(self._active),
            "base_quantization": self.base_quantization,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        layer = keras.saving.deserialize_keras_object(config.pop("layer"))
        return cls(layer, **config)

