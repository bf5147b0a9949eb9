"""`LoRAConfig`: what `add_adapters` puts where, validated in one place."""

import dataclasses
import json

from keras_lowrank.layers.adalora import AdaLoRA
from keras_lowrank.layers.adapter_spec import DELTA_DTYPE
from keras_lowrank.layers.adapter_spec import AdapterSpec
from keras_lowrank.layers.adapter_spec import check_alpha
from keras_lowrank.layers.adapter_spec import check_dropout
from keras_lowrank.layers.adapter_spec import check_rank
from keras_lowrank.layers.adapter_spec import check_scale
from keras_lowrank.layers.quantized_base import check_quantization_mode
from keras_lowrank.surgery.layer_patterns import check_pattern

ALL_LINEAR = "all-linear"
_OWNER = "LoRAConfig"
INIT_METHODS = ("default", "pissa")
QUANTIZE_FROZEN = ("adapted", "all")


@dataclasses.dataclass(frozen=True)
class LoRAConfig:
    """Settings of LoRA adapters, as PEFT's `LoraConfig` has them.

    Patterns are layer paths, last path components, globs or `re:` regular
    expressions (see `keras_lowrank.surgery.layer_patterns`).

    Args:
        rank: int. Rank `r` of each delta. Defaults to 8.
        alpha: float or None. Scale numerator, `s = alpha / rank`; None means
            alpha = rank (s = 1).
        dropout: float in [0, 1). Dropout on the adapter path in training.
        use_rslora: bool. Scale by `alpha / sqrt(rank)` (rank-stabilized).
        targets: patterns of the layers to adapt (Dense, EinsumDense,
            Embedding), or `"all-linear"` for every Dense and EinsumDense
            not kept `trainable`. Defaults to the attention query and value
            projections, `("query", "value")`.
        exclude: patterns of layers never adapted, even when targeted.
        trainable: patterns of layers kept fully trainable. None means: the
            head of a keras-hub task (its layers outside the backbone), and
            nothing for other models.
        rank_pattern: `{pattern: rank}` overrides; the first match wins.
        alpha_pattern: `{pattern: alpha}` overrides; the first match wins.
        init: `"default"` (A random, B zero) or `"pissa"` (A·B starts as the
            top-r singular part of W, and W keeps the residual).
        use_dora: bool. DoRA (`keras_lowrank.layers.DoRAVariant`): a
            trainable magnitude per output unit scales the column-normalized
            `W + s·A·B`, adding `fan_out` parameters per adapter. Dense and
            EinsumDense only. With `init="pissa"` the magnitude starts at the
            norm of the residual plus the principal part (that is, of `W`).
        adaptive: None or `klr.AdaLoRA`. AdaLoRA
            (`keras_lowrank.layers.adalora`): SVD-form adapters `s·P·diag(Λ)·Q`
            whose ranks `klr.AdaLoRACallback` prunes in training down to
            `target_rank` on average. Dense and EinsumDense only; not with
            DoRA.
        base_quantization: None, `"int8"` or `"int4"`. Hold the adapted
            layers' frozen kernels in Keras' own quantized form (QLoRA-like;
            `keras_lowrank.layers.quantized_base`); `A` and `B` stay float32.
            `klr.merge_adapters` gives a float model again.
        quantize_frozen: `"adapted"` (the adapted layers' kernels only) or
            `"all"` (also every other frozen Dense, EinsumDense and
            Embedding; an int4 base holds a causal LM's tied output head
            in int8). Used with `base_quantization` only.

    Example:
    ```python
    config = klr.LoRAConfig(rank=16, targets="all-linear",
                            rank_pattern={"*/attention_output": 4})
    model = klr.add_adapters(model, config)
    ```
    """

    rank: int = 8
    alpha: float | None = None
    dropout: float = 0.0
    use_rslora: bool = False
    targets: str | tuple = ("query", "value")
    exclude: tuple = ()
    trainable: tuple | None = None
    rank_pattern: dict = dataclasses.field(default_factory=dict)
    alpha_pattern: dict = dataclasses.field(default_factory=dict)
    init: str = "default"
    use_dora: bool = False
    adaptive: AdaLoRA | None = None
    base_quantization: str | None = None
    quantize_frozen: str = "adapted"

    def __post_init__(self):
        check_rank(self.rank, "rank", _OWNER)
        if self.alpha is not None:
            check_alpha(self.alpha, "alpha", _OWNER)
        check_dropout(self.dropout, _OWNER)
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
        set_("use_rslora", bool(self.use_rslora))
        if self.targets != ALL_LINEAR:
            set_("targets", _patterns(self.targets, "targets"))
            if not self.targets:
                raise ValueError(
                    "LoRAConfig expected at least one pattern in `targets` "
                    f"(or '{ALL_LINEAR}'). Received: targets=()"
                )
        set_("exclude", _patterns(self.exclude, "exclude"))
        if self.trainable is not None:
            set_("trainable", _patterns(self.trainable, "trainable"))
        for pattern, rank in dict(self.rank_pattern).items():
            check_pattern(pattern, "rank_pattern")
            check_rank(rank, f"rank_pattern['{pattern}']", _OWNER)
        for pattern, alpha in dict(self.alpha_pattern).items():
            check_pattern(pattern, "alpha_pattern")
            check_alpha(alpha, f"alpha_pattern['{pattern}']", _OWNER)
        set_("rank_pattern", dict(self.rank_pattern))
        set_("alpha_pattern", dict(self.alpha_pattern))
        self._check_scales()
        if self.init not in INIT_METHODS:
            raise ValueError(
                f"LoRAConfig got an unknown `init`. Received: init={self.init!r}. "
                f"Supported: {list(INIT_METHODS)}"
            )
        if not isinstance(self.use_dora, bool):
            raise ValueError(
                "LoRAConfig expected `use_dora` to be True or False. "
                f"Received: use_dora={self.use_dora!r}"
            )
        if self.adaptive is not None:
            self._check_adaptive()
        check_quantization_mode(self.base_quantization, _OWNER)
        if self.quantize_frozen not in QUANTIZE_FROZEN:
            raise ValueError(
                "LoRAConfig got an unknown `quantize_frozen`. Received: "
                f"quantize_frozen={self.quantize_frozen!r}. Supported: "
                f"{list(QUANTIZE_FROZEN)}"
            )
        if self.quantize_frozen != "adapted" and self.base_quantization is None:
            raise ValueError(
                "LoRAConfig got quantize_frozen="
                f"{self.quantize_frozen!r} without a `base_quantization`, so "
                "nothing would be quantized. Pass base_quantization='int8' or "
                "'int4' too, or leave quantize_frozen='adapted'."
            )

    def _check_scales(self):
        # Any alpha may meet the smallest rank on some layer.
        rank = min([self.rank, *self.rank_pattern.values()])
        alphas = {"alpha": self.alpha}
        alphas.update({f"alpha_pattern['{p}']": a for p, a in self.alpha_pattern.items()})
        for name, alpha in alphas.items():
            if alpha is not None:
                check_scale(alpha, rank, self.use_rslora, DELTA_DTYPE, _OWNER, name)

    def rank_for(self, path):
        from keras_lowrank.surgery.layer_patterns import first_match

        pattern = first_match(self.rank_pattern, path)
        return self.rank if pattern is None else int(self.rank_pattern[pattern])

    def alpha_for(self, path):
        from keras_lowrank.surgery.layer_patterns import first_match

        pattern = first_match(self.alpha_pattern, path)
        if pattern is not None:
            return float(self.alpha_pattern[pattern])
        return self.alpha

    def spec_for(self, path) -> AdapterSpec:
        """The `AdapterSpec` of the adapter at layer `path`."""
        return AdapterSpec(
            rank=self.rank_for(path),
            alpha=self.alpha_for(path),
            dropout=self.dropout,
            use_rslora=self.use_rslora,
            variant=_variant(self),
        )

    def _check_adaptive(self):
        adaptive = self.adaptive
        if isinstance(adaptive, dict):  # from `to_dict` / JSON
            try:
                adaptive = AdaLoRA.from_dict(adaptive)
            except ValueError as error:
                raise ValueError(f"{_OWNER}: {error}") from None
            object.__setattr__(self, "adaptive", adaptive)
        if not isinstance(adaptive, AdaLoRA):
            raise ValueError(
                "LoRAConfig expected `adaptive` to be None or a klr.AdaLoRA. "
                f"Received: adaptive={adaptive!r}"
            )
        if self.use_dora:
            raise ValueError(
                "LoRAConfig got use_dora=True with adaptive=AdaLoRA(...): an "
                "adapter is DoRA or AdaLoRA, not both (as in PEFT). Drop one."
            )
        adaptive.check_rank(self.rank, _OWNER)
        for pattern, rank in self.rank_pattern.items():
            adaptive.check_rank(rank, _OWNER, f"rank_pattern['{pattern}']")

    def replace(self, **overrides):
        """A copy with `overrides`; unknown names raise a ValueError."""
        _check_names(overrides)
        return dataclasses.replace(self, **overrides)

    def to_dict(self):
        data = dataclasses.asdict(self)
        for key in ("exclude", "trainable"):
            if data[key] is not None:
                data[key] = list(data[key])
        if data["targets"] != ALL_LINEAR:
            data["targets"] = list(data["targets"])
        return data

    def to_json(self):
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data):
        if not isinstance(data, dict):
            raise ValueError(
                "LoRAConfig.from_dict expected a dict of fields "
                f"({{field: value}}). Received: {type(data).__name__} "
                f"{data!r:.80}. Pass the dict that `to_dict()` returns."
            )
        _check_names(data)
        return cls(**data)

    @classmethod
    def from_json(cls, text):
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError(
                "LoRAConfig.from_json expected a JSON object of fields "
                f"({{\"rank\": 8, ...}}). Received: a JSON "
                f"{type(data).__name__}, {text!r:.80}. Pass the text that "
                "`to_json()` returns."
            )
        return cls.from_dict(data)


def _check_names(names):
    fields = [f.name for f in dataclasses.fields(LoRAConfig)]
    unknown = sorted(set(names) - set(fields))
    if unknown:
        raise ValueError(
            f"LoRAConfig has no field {unknown[0]!r}. Received: {unknown}. "
            f"Fields: {fields}"
        )


def _patterns(value, name):
    if isinstance(value, str):
        value = (value,)
    try:
        patterns = tuple(value)
    except TypeError:
        raise ValueError(
            f"LoRAConfig expected `{name}` to be a pattern or a list of "
            f"patterns. Received: {name}={value!r}"
        ) from None
    for pattern in patterns:
        check_pattern(pattern, name)
    return patterns


def _variant(config):
    if config.adaptive is not None:
        return "adalora"
    return "dora" if config.use_dora else "lora"
