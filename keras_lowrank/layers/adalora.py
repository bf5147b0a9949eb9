"""AdaLoRA: adaptive budget allocation of SVD-form adapters (Zhang et al., 2023).

An AdaLoRA adapter writes its delta as a singular value decomposition,

    delta = s · P · diag(Λ ⊙ m) · Q,    s = alpha / ranknum

with `P = lora_a` `(fan_in, r)`, the trainable singular values
`Λ = lora_e` `(r,)`, `Q = lora_b` `(r, fan_out)`, the mask `m = lora_mask`
`(r,)` of the triplets `(P_i, Λ_i, Q_i)` that survive, and `ranknum` the
rank the adapter started with (PEFT's scaling, without its `+ 1e-5`: a
relative difference below 1e-6). As in PEFT, `Λ` starts at zero and `P`,
`Q` at normal(0, 0.02), so the outputs start at the wrapped layer's.

Training needs `klr.AdaLoRACallback` (`keras_lowrank.adaptive`): every step
it reads the gradients of `P`, `Λ`, `Q`, updates the importance of each
triplet, and every `interval` steps masks the least important ones down to
the cubic budget schedule. The layer helps it in two ways, only while the
callback is attached (`attach_training`): an identity with a custom gradient
(`_tap`) copies each factor's gradient into a buffer, and the orthogonality
regularizer `orth_reg_weight · mean(‖PᵀP − I‖_F, ‖QQᵀ − I‖_F)` (PEFT's: the
Frobenius norms, not squared, averaged over the adapted matrices) is added
with `add_loss`. A training call without the callback raises.

A masked `Λ_i` still gets its gradient (straight through the mask): as in
PEFT, where a pruned `Λ_i` is only set to zero, a pruned triplet can come
back at a later allocation. The callback zeroes `Λ_i` when it masks it.
"""

import dataclasses
import numbers

import keras
from keras import ops

from keras_lowrank.layers.adapter_slots import AdapterSlot
from keras_lowrank.layers.variants import AdapterVariant
from keras_lowrank.layers.variants import wraps_dense_kernel

SINGULAR_VALUES = "lora_e"
MASK = "lora_mask"
RANKNUM = "lora_ranknum"
# PEFT's initialization of P and Q.
_FACTOR_STDDEV = 0.02
_TRAINING = "_adalora_training"


@dataclasses.dataclass(frozen=True)
class AdaLoRA:
    """The options of AdaLoRA, as `LoRAConfig(adaptive=...)` takes them.

    The defaults are PEFT's `AdaLoraConfig`'s (`tinit`, `tfinal`, `deltaT`
    there). Steps count optimizer steps from 1.

    Args:
        target_rank: int. The average rank left at the end: the budget is
            `target_rank` times the number of adapted matrices. At most the
            initial rank (`LoRAConfig.rank`). Defaults to 8.
        total_steps: int. The training steps the schedule spans (PEFT's
            `total_step`). Required.
        warmup_steps: int. Steps at the initial budget before pruning starts.
        final_steps: int. Steps at the end with the final allocation fixed.
        interval: int. Steps between two allocations (PEFT's `deltaT`).
        beta1: float in (0, 1). EMA factor of the sensitivity `|w·∂L/∂w|`.
        beta2: float in (0, 1). EMA factor of its uncertainty.
        orth_reg_weight: float >= 0. Weight of the orthogonality regularizer.

    Example:
    ```python
    config = klr.LoRAConfig(rank=12, targets="all-linear",
                            adaptive=klr.AdaLoRA(target_rank=8, total_steps=1000,
                                                 warmup_steps=100, final_steps=200))
    model = klr.add_adapters(model, config)
    model.fit(data, epochs=1, steps_per_epoch=1000,
              callbacks=[klr.AdaLoRACallback()])
    klr.adapter_ranks(model)   # {layer path: surviving rank}
    ```
    """

    target_rank: int = 8
    total_steps: int | None = None
    warmup_steps: int = 0
    final_steps: int = 0
    interval: int = 1
    beta1: float = 0.85
    beta2: float = 0.85
    orth_reg_weight: float = 0.5

    def __post_init__(self):
        _check_int(self.target_rank, "target_rank", 1)
        if self.total_steps is None:
            raise ValueError(
                "AdaLoRA expected `total_steps`, the number of training steps "
                "its budget schedule spans. Received: total_steps=None"
            )
        _check_int(self.total_steps, "total_steps", 1)
        _check_int(self.warmup_steps, "warmup_steps", 0)
        _check_int(self.final_steps, "final_steps", 0)
        _check_int(self.interval, "interval", 1)
        if self.total_steps <= self.warmup_steps + self.final_steps:
            raise ValueError(
                "AdaLoRA expected total_steps > warmup_steps + final_steps, so "
                "that the budget has steps to decrease in. Received: "
                f"total_steps={self.total_steps}, warmup_steps="
                f"{self.warmup_steps}, final_steps={self.final_steps}"
            )
        for name in ("beta1", "beta2"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < 1:
                raise ValueError(
                    f"AdaLoRA expected `{name}` in (0, 1). Received: {name}={value!r}"
                )
        weight = self.orth_reg_weight
        if isinstance(weight, bool) or not isinstance(weight, numbers.Real) or not weight >= 0:
            raise ValueError(
                "AdaLoRA expected `orth_reg_weight` >= 0. "
                f"Received: orth_reg_weight={weight!r}"
            )

    def check_rank(self, rank, owner, name="rank"):
        """Refuses an initial `rank` below `target_rank`."""
        if self.target_rank > rank:
            raise ValueError(
                f"{owner}: AdaLoRA's target_rank={self.target_rank} is above the "
                f"initial {name}={rank}; pruning only lowers ranks. Use a "
                f"target_rank of at most {rank}, or a larger {name}."
            )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data) -> "AdaLoRA":
        if isinstance(data, AdaLoRA):
            return data
        if not isinstance(data, dict):
            raise ValueError(
                "AdaLoRA.from_dict expected a dict of fields. "
                f"Received: {type(data).__name__}"
            )
        fields = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise ValueError(
                f"AdaLoRA has no field {unknown[0]!r}. Fields: {fields}"
            )
        return cls(**data)


def _check_int(value, name, minimum):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        kind = "a positive integer" if minimum == 1 else "an integer >= 0"
        raise ValueError(f"AdaLoRA expected `{name}` to be {kind}. Received: {name}={value!r}")


class AdaLoRAVariant(AdapterVariant):
    """AdaLoRA's SVD form `s·P·diag(Λ⊙m)·Q` (see the module docstring).

    Adds `lora_e` `(r,)` (trainable), `lora_mask` `(r,)` and `lora_ranknum`
    `(1,)` (not trainable) to the adapter. Dense and EinsumDense layers only.

    Example:
    ```python
    dense = keras.layers.Dense(16)
    dense.build((None, 8))
    adapter = klr.LoRADense(dense, rank=4, variant="adalora")
    adapter.lora_e.shape   # (4,)
    ```
    """

    name = "adalora"
    extra_weight_names = (SINGULAR_VALUES, MASK, RANKNUM)
    frozen_weight_names = (MASK, RANKNUM)

    @classmethod
    def supports(cls, adapter_class) -> bool:
        return wraps_dense_kernel(adapter_class)

    @classmethod
    def build(cls, adapter):
        rank = adapter.spec.rank
        adapter.lora_e = adapter.add_weight(
            name=SINGULAR_VALUES, shape=(rank,), initializer="zeros"
        )
        adapter.lora_mask = adapter.add_weight(
            name=MASK, shape=(rank,), initializer="ones",
            trainable=False,
        )
        adapter.lora_ranknum = adapter.add_weight(
            name=RANKNUM, shape=(1,),  # (1,) as PEFT's, and safetensors keeps it
            initializer=keras.initializers.Constant(float(rank)), trainable=False,
        )

    @classmethod
    def initialize(cls, adapter):
        # PEFT's: P and Q normal(0, 0.02), Λ zero (from `build`).
        for factor in (adapter.lora_a, adapter.lora_b):
            init = keras.initializers.RandomNormal(stddev=_FACTOR_STDDEV)
            factor.assign(init(factor.shape, factor.dtype))

    @classmethod
    def extra_weights(cls, adapter) -> dict:
        return {
            SINGULAR_VALUES: adapter.lora_e,
            MASK: adapter.lora_mask,
            RANKNUM: adapter.lora_ranknum,
        }

    @classmethod
    def scale(cls, adapter):
        """`alpha / ranknum`: the scale stays the initial rank's when pruned."""
        return adapter.spec.alpha / ops.cast(ops.reshape(adapter.lora_ranknum, ()), "float32")

    @classmethod
    def factor_product(cls, adapter, inputs, training=None):
        a, e, b = adapter.lora_a, adapter.lora_e, adapter.lora_b
        state = getattr(adapter, _TRAINING, None)
        if training and not _is_symbolic(inputs):
            if state is None:
                raise RuntimeError(
                    f"Layer '{_owner(adapter).name}' holds an AdaLoRA adapter, which "
                    "trains only with its callback: pass "
                    "`callbacks=[klr.AdaLoRACallback()]` to `model.fit`."
                )
            a, e, b = (_tap(value, state.gradients[key]) for key, value in
                       (("lora_a", a), (SINGULAR_VALUES, e), ("lora_b", b)))
            if state.orth_coefficient:
                _owner(adapter).add_loss(state.orth_coefficient * orthogonality(a, b))
        mask = ops.cast(adapter.lora_mask, e.dtype)
        # Λ⊙m forward, the gradient of Λ straight through the mask.
        e = e - ops.stop_gradient(e * (1 - mask))
        scale = ops.cast(cls.scale(adapter), inputs.dtype)
        return adapter.layout.apply_factors(inputs, a * e, b) * scale  # a*e: (fan_in, r)

    @classmethod
    def delta_matrix(cls, adapter):
        a = ops.cast(adapter.lora_a, "float32")
        e = ops.cast(adapter.lora_e, "float32") * ops.cast(adapter.lora_mask, "float32")
        b = ops.cast(adapter.lora_b, "float32")
        return ops.matmul(a * e, b) * cls.scale(adapter)  # (fan_in, fan_out)


def orthogonality(a, b):
    """`‖PᵀP − I‖_F + ‖QQᵀ − I‖_F` of `P = a` `(fan_in, r)`, `Q = b` `(r, fan_out)`.

    PEFT's form: the norms, not squared (the paper squares them).
    """
    eye = ops.eye(a.shape[-1], dtype=a.dtype)
    left = ops.matmul(ops.transpose(a), a) - eye  # (r, r)
    right = ops.matmul(b, ops.transpose(b)) - eye  # (r, r)
    return ops.sqrt(ops.sum(ops.square(left))) + ops.sqrt(ops.sum(ops.square(right)))


@dataclasses.dataclass
class TrainingState:
    """What `AdaLoRACallback` gives an adapter while it trains.

    Args:
        gradients: `{"lora_a", "lora_e", "lora_b": variable}`: buffers the
            backward pass writes each factor's gradient to.
        orth_coefficient: float. The weight of this adapter's
            orthogonality term in the loss (0 turns it off).
    """

    gradients: dict
    orth_coefficient: float


def attach_training(adapter, state):
    """Lets AdaLoRA adapter `adapter` (a layer or a slot) train, with `state`."""
    if adapter.spec.variant != AdaLoRAVariant.name:
        raise ValueError(
            f"attach_training expected an AdaLoRA adapter. Received: variant="
            f"{adapter.spec.variant!r}"
        )
    object.__setattr__(adapter, _TRAINING, state)


def detach_training(adapter):
    object.__setattr__(adapter, _TRAINING, None)


def training_state(adapter):
    return getattr(adapter, _TRAINING, None)


def _tap(value, buffer):
    """`value`, whose gradient is also written to `buffer`."""

    @ops.custom_gradient
    def identity(x):
        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            buffer.assign(ops.cast(upstream, buffer.dtype))
            return upstream

        return ops.multiply(x, ops.cast(1, x.dtype)), grad

    return identity(ops.convert_to_tensor(value))


def _owner(adapter):
    return adapter.adapter if isinstance(adapter, AdapterSlot) else adapter


def _is_symbolic(tensor):
    return isinstance(tensor, keras.KerasTensor)
