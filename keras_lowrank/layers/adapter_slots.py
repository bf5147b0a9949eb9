"""Named adapters of one layer: the first is the layer, the others slots.

`SpecView` is what an adapter layer and an `AdapterSlot` share: the fields
of their `AdapterSpec` and the delta `s·A·B`. `NamedAdapters` gives an
adapter layer its further named adapters, and the choice of those that act.
A variant's hooks take either a layer or a slot.
"""

import keras

from keras_lowrank.layers.variants import get_variant


class SpecView:
    """The spec's fields, read-only, and the delta of the factors."""

    rank = property(lambda self: self.spec.rank)
    alpha = property(lambda self: self.spec.alpha)
    dropout = property(lambda self: self.spec.dropout)
    use_rslora = property(lambda self: self.spec.use_rslora)
    pissa_rank = property(lambda self: self.spec.pissa_rank)
    scale = property(
        lambda self: self.spec.scale,
        doc="`alpha / rank`, or `alpha / sqrt(rank)` with rsLoRA.",
    )

    @property
    def variant(self):
        return get_variant(self.spec.variant)

    def delta_kernel(self):
        """`s·A·B` in the shape of the wrapped kernel, in float32 (the
        variant's `delta_matrix`)."""
        return self.layout.from_matrix(self.variant.delta_matrix(self))


class NamedAdapters:
    """Further named adapters on an adapter layer (mixed into `LoRAAdapter`)."""

    @property
    def adapter_names(self):
        """The names of this layer's adapters, the first one first."""
        return (self.adapter_name, *self.more_specs)

    def view(self, name):
        """The adapter called `name`: this layer for the first, else its slot."""
        if name == self.adapter_name:
            return self
        if name not in self.more_specs:
            raise ValueError(
                f"Layer '{self.name}' has no adapter named {name!r}. Its "
                f"adapters: {list(self.adapter_names)}"
            )
        return self.slots[name]

    def adapter_weights(self, name):
        """`{weight name: variable}` of adapter `name` (factors and extras)."""
        view = self.view(name)
        return {
            "lora_a": view.lora_a,
            "lora_b": view.lora_b,
            **view.variant.extra_weights(view),
        }

    @property
    def active(self):
        """The names of the adapters that act, in order (may be empty)."""
        return self._active

    def set_active(self, names):
        """Makes `names` (of this layer's adapters) the ones that act.

        Only active adapters train: the others' weights are frozen.

        Raises:
            ValueError: an unknown name, or several active adapters of which
                one is not plain LoRA (a DoRA magnitude does not add up).
        """
        names = tuple(names)
        views = [self.view(name) for name in names]
        if len(views) > 1:
            odd = [v.spec.variant for v in views if v.spec.variant != "lora"]
            if odd:
                raise ValueError(
                    f"Layer '{self.name}': only plain LoRA adapters add up when "
                    f"several are active; {list(names)} include a {odd[0]!r} "
                    "adapter. Activate it alone."
                )
        self._active = names
        for name in self.adapter_names:
            frozen = self.view(name).variant.frozen_weight_names
            for key, weight in self.adapter_weights(name).items():
                weight.trainable = name in names and key not in frozen


class AdapterSlot(SpecView):
    """A named adapter of a layer beyond its first: what variant hooks see.

    It holds its own spec, factors and the variant's extra weights, and
    answers like its layer for the rest (layout, base kernel, wrapped layer,
    `add_weight`), so that a variant's hooks take either.
    """

    def __init__(self, adapter, name, spec):
        vars(self).update(adapter=adapter, name=name, spec=spec)

    def __getattr__(self, attr):
        if attr in _SHARED_WITH_LAYER:
            return getattr(self.adapter, attr)
        raise AttributeError(f"Adapter slot {self.name!r} has no attribute {attr!r}")

    @property
    def dropout_layer(self):
        return self.adapter.slot_dropouts.get(self.name)


_SHARED_WITH_LAYER = frozenset(
    ("layer", "layout", "base_kernel", "kernel_name", "add_weight",
     "a_initializer", "b_initializer", "dtype", "compute_dtype")
)


def check_adapter_name(name):
    """Adapter names key weights and files: short identifiers."""
    if not isinstance(name, str) or not name.replace("_", "").replace("-", "").isalnum():
        raise ValueError(
            "An adapter name is a non-empty string of letters, digits, '_' and "
            f"'-'. Received: adapter_name={name!r}"
        )
    return name


def new_dropout(spec, name):
    if spec.dropout <= 0:
        return None
    return keras.layers.Dropout(spec.dropout, name=name)


