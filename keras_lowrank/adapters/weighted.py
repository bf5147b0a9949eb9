"""`add_weighted_adapter`: a new adapter made of weighted existing ones.

With deltas `Δ_i = s_i·A_i·B_i` and weights `w_i`, on every layer that
holds any of them (a layer without adapter `i` counts `Δ_i = 0`):

- `"cat"`: `A = [w_1 s_1 A_1, w_2 s_2 A_2, ...]`, `B = [B_1; B_2; ...]`,
  rank `Σ r_i`: the delta is `Σ w_i Δ_i` exactly.
- `"svd"`: the best rank-`k` approximation of `Σ w_i Δ_i` (truncated SVD,
  `k = svd_rank`, default the largest `r_i`), computed without forming a
  `(fan_in, fan_out)` matrix larger than needed.
- `"linear"`: as PEFT's `linear`, `A = Σ sqrt(w_i) s_i A_i`,
  `B = Σ sqrt(w_i) B_i`: equal ranks only, positive weights only, and not
  the weighted sum of deltas (cross terms `A_i B_j` enter).

The new adapter has scale 1 (`alpha = rank`); it is not made active.
"""

import math
import numbers

import numpy as np
from keras import ops

from keras_lowrank.adapters.adapted_model import adapters
from keras_lowrank.adapters.adapted_model import with_adapter
from keras_lowrank.adapters.named import adapter_names
from keras_lowrank.layers.adapter_spec import AdapterSpec
from keras_lowrank.surgery import checks
from keras_lowrank.surgery import model_state
from keras_lowrank.surgery import rewriting
from keras_lowrank.svd.factorization import balanced_factors

COMBINATIONS = ("svd", "cat", "linear")


def add_weighted_adapter(model, weights, adapter_name, combination="svd", svd_rank=None):
    """A new model with adapter `adapter_name` = a weighted mix of adapters.

    Args:
        model: keras.Model with named adapters. Left untouched.
        weights: `{adapter name: weight}`.
        adapter_name: str. The new adapter's name.
        combination: `"svd"` (default), `"cat"` (exact) or `"linear"`.
        svd_rank: int. The rank of an `"svd"` combination; default the
            largest rank among the combined adapters.

    Returns:
        The new model (the new adapter is not active: `klr.set_adapter`).

    Raises:
        ValueError: a weight of `model` holds NaN or Inf (the message names
            it), an unknown or repeated name, a weight that is not a
            finite number, an unknown combination, a DoRA adapter (its
            magnitude does not combine), or ranks / weights the method
            cannot take (the message names the layer and the adapters).

    Example:
    ```python
    mixed = klr.add_weighted_adapter(model, {"a": 0.7, "b": 0.3}, "ab",
                                     combination="cat")
    klr.set_adapter(mixed, "ab")
    ```
    """
    checks.check_model(model, "add_weighted_adapter")
    checks.check_finite_weights(model, "add_weighted_adapter")
    known = adapter_names(model)
    _check_arguments(model, weights, adapter_name, combination, svd_rank, known)
    plans = {}
    for path, layer in adapters(model).items():
        held = [(layer.view(n), float(w)) for n, w in weights.items() if n in layer.adapter_names]
        if held:
            plans[path] = _combine(path, layer, held, combination, svd_rank)

    def replace(path, layer):
        if path not in plans:
            return None
        a, b = plans[path]
        first = layer.view(next(n for n in weights if n in layer.adapter_names))
        spec = AdapterSpec(rank=a.shape[1], alpha=a.shape[1], dropout=first.spec.dropout)
        new = with_adapter(layer, adapter_name, spec)
        view = new.view(adapter_name)
        view.lora_a.assign(a.astype("float32"))
        view.lora_b.assign(b.astype("float32"))
        return new

    new, _ = rewriting.rewrite_model(model, replace)
    model_state.set_lora_configs(new, model_state.lora_configs(model))
    return new


def _combine(path, layer, held, combination, svd_rank):
    """`(A, B)` float64 of the new adapter on one layer, scale 1."""
    for view, _ in held:
        if view.spec.variant != "lora":
            raise ValueError(
                f"Layer '{path}': adapter {view_name(layer, view)!r} is a "
                f"{view.spec.variant!r} adapter; only plain LoRA adapters "
                "combine (a DoRA magnitude has no weighted sum)."
            )
    factors = [
        (_numpy(view.lora_a), _numpy(view.lora_b), view.scale, weight)
        for view, weight in held
    ]
    if combination == "cat":
        a = np.concatenate([w * s * a for a, _, s, w in factors], axis=1)  # (in, Σr)
        b = np.concatenate([b for _, b, _, _ in factors], axis=0)  # (Σr, out)
        return a, b
    if combination == "linear":
        ranks = {a.shape[1] for a, _, _, _ in factors}
        if len(ranks) > 1:
            raise ValueError(
                f"Layer '{path}': combination='linear' needs adapters of one "
                f"rank; they have ranks {sorted(ranks)}. Use 'cat' (exact) or "
                "'svd'."
            )
        a = sum(math.sqrt(w) * s * a for a, _, s, w in factors)
        b = sum(math.sqrt(w) * b for _, b, _, w in factors)
        return a, b
    rank = svd_rank or max(a.shape[1] for a, _, _, _ in factors)
    left = np.concatenate([w * s * a for a, _, s, w in factors], axis=1)  # (in, Σr)
    right = np.concatenate([b for _, b, _, _ in factors], axis=0)  # (Σr, out)
    q_l, r_l = np.linalg.qr(left)
    q_r, r_r = np.linalg.qr(right.T)
    u, sigma, vt = np.linalg.svd(r_l @ r_r.T)  # the delta is q_l · core · q_rᵀ
    rank = min(rank, len(sigma))
    return balanced_factors(q_l @ u[:, :rank], sigma[:rank], vt[:rank] @ q_r.T, scale=1.0)


def view_name(layer, view):
    return next(n for n in layer.adapter_names if layer.view(n) is view)


def _numpy(weight):
    return np.asarray(ops.convert_to_numpy(weight), np.float64)


def _check_arguments(model, weights, adapter_name, combination, svd_rank, known):
    if not isinstance(weights, dict) or not weights:
        raise ValueError(
            "add_weighted_adapter expected `weights` as {adapter name: weight}. "
            f"Received: weights={weights!r}"
        )
    unknown = [n for n in weights if n not in known]
    if unknown:
        raise ValueError(
            f"add_weighted_adapter: model '{model.name}' has no adapter named "
            f"{unknown[0]!r}. Its adapters: {known}"
        )
    for name, weight in weights.items():
        if (
            isinstance(weight, bool)
            or not isinstance(weight, numbers.Real)
            or not math.isfinite(weight)
        ):
            raise ValueError(
                f"add_weighted_adapter expected finite numbers as weights. "
                f"Received: weights[{name!r}]={weight!r}"
            )
        if combination == "linear" and weight <= 0:
            raise ValueError(
                "combination='linear' takes square roots of the weights, so "
                f"they must be > 0. Received: weights[{name!r}]={weight!r}. "
                "Use 'cat' or 'svd' for negative weights."
            )
    if adapter_name in known:
        raise ValueError(
            f"add_weighted_adapter: model '{model.name}' already has an "
            f"adapter named {adapter_name!r}. Adapters: {known}"
        )
    if combination not in COMBINATIONS:
        raise ValueError(
            f"add_weighted_adapter got an unknown combination. Received: "
            f"combination={combination!r}. Supported: {list(COMBINATIONS)}"
        )
    if svd_rank is not None and (
        combination != "svd" or isinstance(svd_rank, bool)
        or not isinstance(svd_rank, numbers.Integral) or svd_rank < 1
    ):
        raise ValueError(
            "add_weighted_adapter expected `svd_rank` to be a positive integer, "
            f"with combination='svd'. Received: svd_rank={svd_rank!r}, "
            f"combination={combination!r}"
        )
    from keras_lowrank.layers.adapter_slots import check_adapter_name

    check_adapter_name(adapter_name)
