"""`AdapterSpec`: the hyperparameters of one adapter, declared once.

`LoRAConfig.spec_for(path)` builds one per adapted layer; the adapter layers
hold it (and serialize its fields), adapter files record it, and
`shrink_adapters` copies it with a new rank. Every field is validated here,
so a rank, an alpha or a variant read from a file passes the same checks as
one typed by a user.
"""

import dataclasses
import math
import numbers

import ml_dtypes

# merge, export and `delta_kernel` compute `s·A·B` in float32, whatever the
# layer's dtype policy: a scale must be finite there.
DELTA_DTYPE = "float32"


@dataclasses.dataclass(frozen=True)
class AdapterSpec:
    """What one adapter is: rank, scale, dropout and variant.

    Args:
        rank: int. Rank `r` of the delta `s·A·B`.
        alpha: float or None. Scale numerator: `s = alpha / rank`
            (`alpha / sqrt(rank)` with rsLoRA). None means alpha = rank.
        dropout: float in [0, 1). Dropout on the adapter path in training.
        use_rslora: bool. Rank-stabilized scaling, `alpha / sqrt(rank)`.
        variant: str. The name of a registered `AdapterVariant`
            (`"lora"`; see `keras_lowrank.layers.variants`).
        pissa_rank: int or None. Set by PiSSA init: the wrapped kernel holds
            `W` minus its top-`pissa_rank` singular part.

    Example:
    ```python
    spec = klr.AdapterSpec(rank=8, alpha=16)
    spec.scale                   # 2.0
    spec.replace(rank=4).scale   # 4.0: alpha stays 16
    ```
    """

    rank: int = 8
    alpha: float | None = None
    dropout: float = 0.0
    use_rslora: bool = False
    variant: str = "lora"
    pissa_rank: int | None = None

    def __post_init__(self):
        owner = "AdapterSpec"
        check_rank(self.rank, "rank", owner)
        if self.alpha is not None:
            check_alpha(self.alpha, "alpha", owner)
        check_dropout(self.dropout, owner)
        if not isinstance(self.use_rslora, bool):
            raise ValueError(
                f"{owner} expected `use_rslora` to be True or False. "
                f"Received: use_rslora={self.use_rslora!r}"
            )
        from keras_lowrank.layers.variants import get_variant

        get_variant(self.variant)
        if self.pissa_rank is not None:
            check_rank(self.pissa_rank, "pissa_rank", owner)
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
        set_("rank", int(self.rank))
        set_("alpha", float(self.rank if self.alpha is None else self.alpha))
        set_("dropout", float(self.dropout))
        check_scale(self.alpha, self.rank, self.use_rslora, DELTA_DTYPE, owner)
        if self.pissa_rank is not None:
            set_("pissa_rank", int(self.pissa_rank))

    @property
    def scale(self) -> float:
        """`alpha / rank`, or `alpha / sqrt(rank)` with rsLoRA."""
        if self.use_rslora:
            return self.alpha / math.sqrt(self.rank)
        return self.alpha / self.rank

    def replace(self, **changes) -> "AdapterSpec":
        """A copy with `changes`; unknown field names raise a ValueError."""
        _check_names(changes, "AdapterSpec.replace")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data, source="AdapterSpec.from_dict") -> "AdapterSpec":
        """Builds a spec from recorded fields (missing ones take defaults).

        Args:
            data: dict of fields.
            source: str. Where `data` comes from (a file and layer path),
                named in errors.

        Raises:
            ValueError: `data` is not a dict, has an unknown field, or a
                field fails validation; the message starts with `source`.
        """
        if not isinstance(data, dict):
            raise ValueError(
                f"{source}: expected a dict of adapter settings. "
                f"Received: {type(data).__name__}"
            )
        fields = {k: v for k, v in data.items() if k in FIELDS}
        try:
            return cls(**fields)
        except ValueError as error:
            raise ValueError(f"{source}: {error}") from None


FIELDS = tuple(f.name for f in dataclasses.fields(AdapterSpec))


# === Validation shared by the spec, the config and the layers ===


def check_rank(rank, name, owner, hint=" to be"):
    if isinstance(rank, bool) or not isinstance(rank, numbers.Integral) or rank < 1:
        raise ValueError(
            f"{owner} expected `{name}`{hint} a positive integer. "
            f"Received: {name}={rank!r}"
        )


def check_alpha(alpha, name, owner, hint=""):
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not alpha > 0:
        raise ValueError(
            f"{owner} expected `{name}` > 0{hint}. Received: {name}={alpha!r}"
        )
    if not math.isfinite(alpha):
        raise ValueError(
            f"{owner} expected a finite `{name}`: an infinite scale makes "
            f"every output NaN or Inf. Received: {name}={alpha!r}"
        )


def check_scale(alpha, rank, use_rslora, dtype, owner, name="alpha", where=None, fix=""):
    """Refuses a finite `alpha` whose scale `dtype` cannot hold.

    Such a scale rounds to Inf in `dtype`: `s·A·B` is Inf or NaN, and so is
    every output, as soon as B is non-zero.

    Args:
        alpha, rank, use_rslora: the scale's terms.
        dtype: the dtype the scale multiplies in.
        owner: str. Who checks, first in the message.
        name: str. The name of the alpha field, as the user wrote it.
        where: str. Why `dtype` (default: merge and export compute in it).
        fix: str. A further way out, ending the message.
    """
    denominator = math.sqrt(rank) if use_rslora else rank
    scale = alpha / denominator
    limit = float(ml_dtypes.finfo(dtype).max)
    if scale <= limit:
        return
    where = where or "the dtype keras_lowrank computes s·A·B in"
    formula = "alpha / sqrt(rank)" if use_rslora else "alpha / rank"
    raise ValueError(
        f"{owner}: `{name}` with rank={rank} gives the scale s = {formula} = "
        f"{scale:.4g}, beyond the largest {dtype} value ({limit:.4g}), {where}: "
        "s·A·B would be Inf, and every output NaN or Inf once B is non-zero. "
        f"Received: {name}={alpha!r}. Use an alpha of at most "
        f"{limit * denominator:.4g} for rank {rank}{fix}."
    )


def check_dropout(dropout, owner):
    if (
        isinstance(dropout, bool)
        or not isinstance(dropout, numbers.Real)
        or not 0 <= dropout < 1
    ):
        raise ValueError(
            f"{owner} expected `dropout` in [0, 1). Received: dropout={dropout!r}"
        )


def _check_names(names, owner):
    unknown = sorted(set(names) - set(FIELDS))
    if unknown:
        raise ValueError(
            f"{owner}: AdapterSpec has no field {unknown[0]!r}. "
            f"Received: {unknown}. Fields: {list(FIELDS)}"
        )
