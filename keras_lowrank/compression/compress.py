"""`compress`: a new model whose Dense / EinsumDense kernels are SVD factors.

Each targeted kernel `W (fan_in, fan_out)` becomes `left (fan_in, k) @ right
(k, fan_out)`, its best rank-`k` approximation (truncated SVD), held by a
`LowRankDense` / `LowRankEinsumDense` that applies it as two thin matmuls.
That saves parameters only below the break-even rank
`fan_in·fan_out / (fan_in + fan_out)`; a layer whose chosen rank is not below
it is left as it is, and the report says why.
"""

import math
import numbers
import warnings

import keras
import numpy as np

from keras_lowrank._compat import keras as keras_compat
from keras_lowrank.adapters.config import ALL_LINEAR
from keras_lowrank.adapters.config import LoRAConfig
from keras_lowrank.adapters.summary import parameter_counts
from keras_lowrank.adapters.targeting import is_kept_trainable
from keras_lowrank.adapters.targeting import trainable_patterns
from keras_lowrank.compression.report import FACTORIZED
from keras_lowrank.compression.report import KEPT
from keras_lowrank.compression.report import CompressionReport
from keras_lowrank.compression.report import LayerCompression
from keras_lowrank.compression.report import percent
from keras_lowrank.layers import LoRAAdapter
from keras_lowrank.layers import LowRankDense
from keras_lowrank.layers import LowRankEinsumDense
from keras_lowrank.surgery import layer_paths
from keras_lowrank.surgery import layer_patterns
from keras_lowrank.surgery import rewriting
from keras_lowrank.surgery import trainable_flags
from keras_lowrank.svd.factorization import balanced_factors
from keras_lowrank.svd.factorization import kernel_matrix
from keras_lowrank.svd.factorization import singular_values
from keras_lowrank.svd.rank_selection import select_rank

_LINEAR = (keras.layers.EinsumDense, keras.layers.Dense)


def compress(
    model,
    targets=ALL_LINEAR,
    rank: int | None = None,
    energy: float | None = None,
    param_ratio: float | None = None,
    exclude=(),
    train_only_factors: bool = False,
):
    """A new model with the targeted Dense / EinsumDense layers factorized.

    Each targeted layer becomes a `LowRankDense` / `LowRankEinsumDense`
    holding the truncated SVD of its kernel, where that saves parameters
    (rank `k < fan_in·fan_out / (fan_in + fan_out)`); other targeted layers
    are left as they are and the report says why. The head of a keras-hub
    task (its layers outside the backbone) is never targeted. The factors are
    trainable, so `model.fit` fine-tunes them; every other layer keeps the
    input's `trainable` flag (a frozen parent freezes its factors too), unless
    `train_only_factors=True`. The input model is untouched.

    Args:
        model: keras.Model. A built Functional / Sequential model or keras-hub
            Backbone / Task, without LoRA adapters (merge them first).
        targets: `"all-linear"` (every Dense and EinsumDense), or patterns:
            layer paths, last path components, globs or `re:` expressions.
        rank: int. The same rank `k` for every targeted layer.
        energy: float in (0, 1]. Per layer, the smallest `k` keeping this
            share of `sum σ²`.
        param_ratio: float in (0, 1). Per layer, the `k` whose factors hold
            about this share of the kernel's parameters:
            `k = max(1, floor(R·fan_in·fan_out / (fan_in + fan_out)))`.
        exclude: patterns of layers never factorized.
        train_only_factors: bool. When True, freeze every layer except the
            factorized ones and the task's head.

    Returns:
        `(compressed_model, CompressionReport)`. The model is of the input's
        class, saves to `.keras` and exports with `klr.export` (the factors
        stay two matmuls in the artifact).

    Raises:
        ValueError: not exactly one of `rank`, `energy`, `param_ratio`, or
            one out of range; no Dense / EinsumDense layer matched `targets`
            (the message lists the paths there are); every match excluded;
            the model holds LoRA adapters.

    Example:
    ```python
    compressed, report = klr.compress(
        classifier, targets=["re:.*feedforward_.*"], param_ratio=0.5)
    print(report)
    compressed.fit(train_data, epochs=1)   # recover the accuracy
    ```
    """
    method = _check_method(rank, energy, param_ratio)
    targets = _patterns(targets, "targets", allow_all=True)
    exclude = _patterns(exclude, "exclude")
    paths = layer_paths.layer_paths(model)
    adapted = [p for p, layer in paths.items() if isinstance(layer, LoRAAdapter)]
    if adapted:
        raise ValueError(
            f"Model '{model.name}' holds LoRA adapters (at {adapted[:3]}"
            f"{' ...' if len(adapted) > 3 else ''}). Merge them first with "
            "`klr.merge_adapters(model)`, then compress the merged model."
        )
    head = trainable_patterns(model, LoRAConfig())
    chosen = _targeted(paths, targets, exclude, head)
    rows = [_plan(p, paths[p], rank, energy, param_ratio) for p in chosen]
    ranks = {row.path: row.rank for row in rows if row.status == FACTORIZED}

    def factorize(path, layer):
        if path not in ranks:
            return None
        low_rank_class = (
            LowRankEinsumDense
            if isinstance(layer, keras.layers.EinsumDense)
            else LowRankDense
        )
        low_rank = low_rank_class.from_layer(layer, rank=ranks[path])
        _balance(low_rank)
        low_rank.trainable = True
        return low_rank

    compressed, _ = rewriting.rewrite_model(model, factorize)
    if train_only_factors:
        _train_only(compressed, set(ranks), head)
    report = CompressionReport(
        method=method,
        layers=tuple(rows),
        total_params_before=parameter_counts(model)[1],
        total_params_after=parameter_counts(compressed)[1],
    )
    return compressed, report


# === Choosing the rank of one layer ===


def _plan(path, layer, rank, energy, param_ratio):
    shape = tuple(int(d) for d in layer.kernel.shape)
    before = int(layer.count_params())
    kept = dict(path=path, kernel_shape=shape, params_before=before,
                params_after=before, status=KEPT)
    reason = _unsupported(layer)
    if reason is None:
        try:
            matrix, layout = kernel_matrix(layer)
        except ValueError as error:
            reason = str(error)
    if reason is not None:
        return LayerCompression(rank=None, relative_error=None, energy=None,
                                reason=reason, **kept)
    m, n = layout.fan_in, layout.fan_out
    s = singular_values(matrix)
    if rank is not None:
        k = int(rank)
    elif energy is not None:
        k = select_rank(s, energy=energy)
    else:
        # The tiny factor absorbs float error in R·m·n/(m + n), e.g. 0.5·256/32.
        k = max(1, math.floor(param_ratio * m * n / (m + n) * (1 + 1e-12)))
    squares = s**2
    total = float(squares.sum())
    dropped = float(squares[k:].sum())
    share = 1.0 - dropped / total if total else 1.0
    error = math.sqrt(dropped / total) if total else 0.0
    factored = k * (m + n)
    if factored >= m * n:
        return LayerCompression(
            rank=k, relative_error=error, energy=share,
            reason=f"rank {k} keeps {percent(share)} energy but needs "
            f"{factored:,} ≥ {m * n:,} parameters",
            **kept,
        )
    return LayerCompression(
        path=path, kernel_shape=shape, rank=k, params_before=before,
        params_after=factored + _bias_size(layer), relative_error=error,
        energy=share, status=FACTORIZED,
    )


def _bias_size(layer):
    bias = getattr(layer, "bias", None)
    return 0 if bias is None else math.prod(bias.shape)


def _balance(low_rank):
    """Turns `left = U·Σ, right = Vᵀ` into `left = U·√Σ, right = √Σ·Vᵀ`.

    The product is the same. With both factors at the same scale, an
    optimizer whose steps are about `lr` per entry (Adam) moves them alike;
    with `right = Vᵀ` (entries ~1/sqrt(fan_out)) its first steps would
    swamp `right` and undo the compression's accuracy.
    """
    left = np.asarray(low_rank.left.numpy(), np.float64)  # (fan_in, k)
    right = np.asarray(low_rank.right.numpy(), np.float64)  # (k, fan_out)
    sigma = np.linalg.norm(left, axis=0)  # the columns of U·Σ have norms σ_i
    u = left / np.where(sigma > 0, sigma, 1.0)
    left, right = balanced_factors(u, sigma, right)
    low_rank.left.assign(left.astype(low_rank.left.dtype))
    low_rank.right.assign(right.astype(low_rank.right.dtype))


def _unsupported(layer):
    """Why `layer` cannot become a factorized layer, or None."""
    base = keras.layers.EinsumDense if isinstance(layer, keras.layers.EinsumDense) \
        else keras.layers.Dense
    if type(layer).call is not base.call:
        return (f"{type(layer).__name__} overrides {base.__name__}.call, which "
                "a factorized layer would not keep")
    if layer.quantization_mode is not None:
        return f"quantized ({layer.quantization_mode}); compress the float model"
    return None


# === Which layers ===


def _targeted(paths, targets, exclude, head):
    candidates = [p for p, layer in paths.items()
                  if isinstance(layer, _LINEAR) and not is_kept_trainable(p, head)]
    if targets == ALL_LINEAR:
        chosen = list(candidates)
    else:
        chosen = [p for p in candidates if layer_patterns.matches_any(targets, p)]
        for target in targets:
            if chosen and not any(layer_patterns.matches(target, p) for p in candidates):
                warnings.warn(f"Target pattern {target!r} matched no Dense or "
                              "EinsumDense layer.", stacklevel=3)
    if not chosen:
        shown = [f"{p} ({type(layer).__name__}{', head' if is_kept_trainable(p, head) else ''})"
                 for p, layer in paths.items() if isinstance(layer, _LINEAR)]
        raise ValueError(
            f"No layer matched targets={_show(targets)}: no Dense or EinsumDense "
            "layer outside the task's head has a path, last path component, "
            "glob or 're:' match for them. Dense and EinsumDense layers of the "
            f"model: {', '.join(shown) or '(none)'}"
        )
    for pattern in exclude:
        if not any(layer_patterns.matches(pattern, p) for p in paths):
            warnings.warn(f"Exclude pattern {pattern!r} matched no layer of the "
                          "model.", stacklevel=3)
    kept = [p for p in chosen if not layer_patterns.matches_any(exclude, p)]
    if not kept:
        raise ValueError(
            f"Every layer that targets={_show(targets)} matched is excluded by "
            f"exclude={list(exclude)}: {chosen}"
        )
    return kept


def _train_only(model, factorized, head):
    trainable_flags.set_trainable(model, True)
    for path, layer in layer_paths.layer_paths(model).items():
        if path in factorized or is_kept_trainable(path, head):
            layer.trainable = True
        elif not keras_compat.has_sublayers(layer):
            layer.trainable = False


# === Arguments ===


def _check_method(rank, energy, param_ratio):
    given = {k: v for k, v in
             (("rank", rank), ("energy", energy), ("param_ratio", param_ratio))
             if v is not None}
    if len(given) != 1:
        raise ValueError(
            "compress expected exactly one of `rank`, `energy` or "
            f"`param_ratio`. Received: rank={rank}, energy={energy}, "
            f"param_ratio={param_ratio}"
        )
    if rank is not None and (not isinstance(rank, numbers.Integral)
                             or isinstance(rank, bool) or rank < 1):
        raise ValueError(
            f"compress expected `rank` to be a positive integer. Received: rank={rank!r}"
        )
    if energy is not None and not (_is_real(energy) and 0 < energy <= 1):
        raise ValueError(
            f"compress expected `energy` in (0, 1]. Received: energy={energy!r}"
        )
    if param_ratio is not None and not (_is_real(param_ratio) and 0 < param_ratio < 1):
        raise ValueError(
            "compress expected `param_ratio` in (0, 1) (the share of each "
            f"kernel's parameters to keep). Received: param_ratio={param_ratio!r}"
        )
    name, value = next(iter(given.items()))
    return f"{name}={value}"


def _patterns(value, name, allow_all=False):
    if allow_all and value == ALL_LINEAR:
        return ALL_LINEAR
    patterns = (value,) if isinstance(value, str) else tuple(value)
    if allow_all and not patterns:
        raise ValueError(f"compress expected at least one pattern in `{name}` "
                         f"(or '{ALL_LINEAR}'). Received: {name}=()")
    for pattern in patterns:
        layer_patterns.check_pattern(pattern, name)
    return patterns


def _is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool) \
        and math.isfinite(value)


def _show(targets):
    return targets if isinstance(targets, str) else list(targets)
