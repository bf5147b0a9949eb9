"""`OnDeviceTraining`: how a trainable LiteRT artifact trains on the phone.

`klr.export(model, "personal.tflite", "tflite",
on_device_training=OnDeviceTraining(batch_size=8, optimizer="adam"))` writes
an artifact whose `train` signature updates the LoRA factors (and a kept
head) with the same step as `keras.optimizers.SGD` / `Adam` / `AdamW`. This
module holds only the record and its checks: no TensorFlow, so the TF-free
runner (`export/train_on_device.py`) reads it too.
"""

import dataclasses
import math

OPTIMIZERS = ("sgd", "adam", "adamw")
# Keras' defaults, so that an artifact trains as `keras.optimizers.<Name>()`.
DEFAULT_LEARNING_RATE = {"sgd": 0.01, "adam": 0.001, "adamw": 0.001}
DEFAULT_WEIGHT_DECAY = {"sgd": None, "adam": None, "adamw": 0.004}


@dataclasses.dataclass(frozen=True)
class OnDeviceTraining:
    """The training an artifact carries, checked when made.

    Args:
        batch_size: int >= 1. Every `train` call takes exactly this many
            rows: a fixed shape keeps the gradient graph in LiteRT's
            builtin ops (a dynamic batch needs `BroadcastGradientArgs`, a
            Flex op). The runner pads a short last batch with zero-weight
            rows (`loss_mask`) for a causal LM and fills it from the start
            of the epoch for a classifier.
        optimizer: `"sgd"`, `"adam"` or `"adamw"`: the update of
            `keras.optimizers.SGD` (no momentum), `Adam` or `AdamW`.
        learning_rate: float > 0. Default: Keras' (0.01 for SGD, 0.001
            for Adam and AdamW). Constant: no schedule.
        weight_decay: float >= 0, or None. Decoupled weight decay as
            Keras applies it (`w -= w * weight_decay * learning_rate`
            before the step). Default: None, AdamW's 0.004.
        beta_1, beta_2, epsilon: Adam and AdamW's, Keras' defaults.
        sequence_length: int >= 2, or None. The token length of every row.
            Default: the model's preprocessor's `sequence_length`, else the
            length of its inputs when fixed.

    Raises:
        ValueError: naming the field, what was received and what is allowed.
    """

    batch_size: int = 8
    optimizer: str = "sgd"
    learning_rate: float | None = None
    weight_decay: float | None = None
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-7
    sequence_length: int | None = None

    def __post_init__(self):
        _positive_int(self.batch_size, "batch_size", 1)
        if self.sequence_length is not None:
            _positive_int(self.sequence_length, "sequence_length", 2)
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(
                f"Unrecognized optimizer={self.optimizer!r} for on-device "
                f"training. Supported: {list(OPTIMIZERS)}")
        if self.learning_rate is None:
            object.__setattr__(self, "learning_rate", DEFAULT_LEARNING_RATE[self.optimizer])
        if self.weight_decay is None:
            object.__setattr__(self, "weight_decay", DEFAULT_WEIGHT_DECAY[self.optimizer])
        _number(self.learning_rate, "learning_rate", low=0.0, open_low=True)
        if self.weight_decay is not None:
            _number(self.weight_decay, "weight_decay", low=0.0)
        for name in ("beta_1", "beta_2"):
            _number(getattr(self, name), name, low=0.0, high=1.0)
        _number(self.epsilon, "epsilon", low=0.0, open_low=True)

    def to_dict(self):
        """The fields, as JSON the artifact's metadata holds."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, fields):
        return cls(**fields)


def _positive_int(value, name, low):
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(
            f"`{name}` must be an integer >= {low}. Received: {name}={value!r}")


def _number(value, name, low, high=None, open_low=False):
    ok = (not isinstance(value, bool) and isinstance(value, (int, float))
          and math.isfinite(value) and (value > low if open_low else value >= low)
          and (high is None or value < high))
    if not ok:
        bound = f"> {low}" if open_low else f">= {low}"
        if high is not None:
            bound += f" and < {high}"
        raise ValueError(
            f"`{name}` must be a finite number {bound}. Received: {name}={value!r}")
