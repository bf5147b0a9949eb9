"""A PNG of kernel spectra: normalized singular values and cumulative energy.

It answers "how far can these layers be truncated?" at a glance: a fast-decaying
`σ_i / σ_1` and an energy curve that rises steeply mean a small rank keeps
most of the kernel.
"""

import math
import os
import re

import keras
import numpy as np

from keras_lowrank.surgery import layer_patterns
from keras_lowrank.surgery.layer_paths import layer_paths
from keras_lowrank.svd.factorization import kernel_matrix
from keras_lowrank.svd.factorization import singular_values
from keras_lowrank.svd.rank_selection import cumulative_energy
from keras_lowrank.svd.rank_selection import select_rank
from keras_lowrank.utils.atomic import atomic_path

# Up to this many layers get a subplot each; more share two overlaid panels.
_GRID_LIMIT = 12
_GRID_COLUMNS = 3


def plot_spectrum(
    model_or_layers,
    path,
    ranks: dict | None = None,
    targets=None,
    energy: float | None = None,
) -> str:
    """Writes a PNG of each layer's singular value spectrum.

    Each layer shows `σ_i / σ_1` (log scale) and the cumulative energy
    `sum_{j<=i} σ_j² / sum σ²`; a chosen rank is marked with a dashed line
    (or, when many layers share one panel, a dot on the energy curve).

    Args:
        model_or_layers: a Keras model (all its Dense/EinsumDense layers, at
            the paths of `layer_paths.layer_paths`; the layers inside an
            adapter are not listed), a single layer, a list of layers, or a
            dict `{name: layer or 2-D matrix}`.
        path: str or path-like ending in `.png`. Written atomically.
        ranks: dict `{name: k}` of ranks to mark; names are layer paths (or
            the dict keys). Not allowed with `energy`.
        targets: str or list of str. Layer patterns, as `add_adapters` and
            `compress` take them (a path, a last path component, a glob, or
            `re:` + a regular expression); only matching layers are plotted.
        energy: float in (0, 1]. Mark, for every layer, the rank that keeps
            this share of the energy (see `select_rank`).

    Returns:
        str. `path`.

    Raises:
        ValueError: for a path not ending in `.png`, both `ranks` and
            `energy`, no layers to plot, `targets` that match nothing, or
            `ranks` naming unknown layers or out-of-range ranks.
        TypeError: for an entry that is neither a Dense/EinsumDense layer nor
            a matrix.
        ImportError: when matplotlib is not installed.

    Example:
    ```python
    plot_spectrum(model, "spectrum.png", targets="*feedforward*", energy=0.9)
    ```
    """
    if not os.fspath(path).lower().endswith(".png"):
        raise ValueError(
            f"plot_spectrum writes PNG files; expected a path ending in "
            f"'.png'. Received: path='{os.fspath(path)}'"
        )
    if ranks is not None and energy is not None:
        raise ValueError(
            "Pass at most one of `ranks` or `energy`. "
            f"Received: ranks={ranks}, energy={energy}"
        )
    figure_cls = _import_figure()
    matrices = _collect_matrices(model_or_layers, targets)
    spectra = {name: singular_values(m) for name, m in matrices.items()}
    if energy is not None:
        ranks = {name: select_rank(s, energy=energy) for name, s in spectra.items()}
    ranks = _check_ranks(ranks or {}, spectra)
    shapes = {name: m.shape for name, m in matrices.items()}
    if len(spectra) <= _GRID_LIMIT:
        fig = _grid_figure(figure_cls, spectra, shapes, ranks)
    else:
        fig = _overlay_figure(figure_cls, spectra, ranks)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    return os.fspath(path)


def _import_figure():
    try:
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError(
            "plot_spectrum needs matplotlib: `pip install matplotlib==3.11.2`."
        ) from error
    # A bare Figure renders with Agg and leaves pyplot's global state alone.
    return Figure


def _collect_matrices(model_or_layers, targets):
    if isinstance(model_or_layers, keras.Model):
        entries = {
            path: layer
            for path, layer in layer_paths(model_or_layers).items()
            if isinstance(layer, (keras.layers.Dense, keras.layers.EinsumDense))
        }
        entries = dict(sorted(entries.items(), key=lambda kv: _natural_key(kv[0])))
    elif isinstance(model_or_layers, keras.layers.Layer):
        entries = {_layer_name(model_or_layers): model_or_layers}
    elif isinstance(model_or_layers, dict):
        entries = dict(model_or_layers)
    elif isinstance(model_or_layers, (list, tuple)):
        entries = {_layer_name(layer): layer for layer in model_or_layers}
    else:
        raise TypeError(
            "Expected a Keras model, a layer, a list of layers or a dict "
            "{name: layer or matrix}. Received: "
            f"{type(model_or_layers).__name__}"
        )
    if not entries:
        raise ValueError(
            "Found no Dense or EinsumDense layers to plot in "
            f"{type(model_or_layers).__name__}."
        )
    if targets is not None:
        patterns = [targets] if isinstance(targets, str) else list(targets)
        for pattern in patterns:
            layer_patterns.check_pattern(pattern, "targets")
        kept = {
            name: entry
            for name, entry in entries.items()
            if layer_patterns.matches_any(patterns, name)
        }
        if not kept:
            names = list(entries)
            shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
            raise ValueError(
                f"targets={patterns} match none of the {len(names)} "
                f"layers. Available: {shown}"
            )
        entries = kept
    return {name: _matrix_of(name, entry) for name, entry in entries.items()}


def _matrix_of(name, entry):
    if isinstance(entry, keras.layers.Layer):
        return kernel_matrix(entry)[0]
    matrix = np.asarray(keras.ops.convert_to_numpy(entry), dtype=np.float64)
    if matrix.ndim != 2:
        raise ValueError(
            f"Entry '{name}' must be a Dense/EinsumDense layer or a 2-D "
            f"matrix. Received: an array of shape {matrix.shape}"
        )
    return matrix


def _check_ranks(ranks, spectra):
    unknown = sorted(set(ranks) - set(spectra))
    if unknown:
        raise ValueError(
            f"`ranks` names layers that are not plotted: {unknown}. "
            f"Plotted: {list(spectra)}"
        )
    for name, k in ranks.items():
        n = len(spectra[name])
        if not isinstance(k, (int, np.integer)) or not 1 <= k <= n:
            raise ValueError(
                f"Expected the rank of '{name}' to be an integer in [1, {n}]. "
                f"Received: ranks['{name}']={k!r}"
            )
    return {name: int(k) for name, k in ranks.items()}


def _grid_figure(figure_cls, spectra, shapes, ranks):
    n = len(spectra)
    cols = min(_GRID_COLUMNS, n)
    rows = math.ceil(n / cols)
    fig = figure_cls(figsize=(5.2 * cols, 3.6 * rows), layout="constrained")
    for index, (name, s) in enumerate(spectra.items()):
        ax = fig.add_subplot(rows, cols, index + 1)
        x = np.arange(1, len(s) + 1)
        ax.semilogy(x, _normalized(s), color="C0")
        ax.set_xlabel("index i")
        ax.set_ylabel(r"$\sigma_i / \sigma_1$", color="C0")
        ax.grid(alpha=0.3)
        energy_ax = ax.twinx()
        energy = cumulative_energy(s)
        energy_ax.plot(x, energy, color="C1")
        energy_ax.set_ylim(0.0, 1.02)
        energy_ax.set_ylabel("cumulative energy", color="C1")
        fan_in, fan_out = shapes[name]
        title = f"{_short(name)}  ({fan_in}×{fan_out})"
        if name in ranks:
            k = ranks[name]
            error = math.sqrt(max(0.0, 1.0 - energy[k - 1]))
            ax.axvline(k, color="C3", linestyle="--")
            # In the title, where it can never hide a curve.
            title += (
                f"\nk = {k}: {100 * energy[k - 1]:.1f}% energy, "
                f"relative error {error:.3f}"
            )
        ax.set_title(title, fontsize=9)
        ax.xaxis.set_major_locator(_integer_ticks())
    return fig


def _overlay_figure(figure_cls, spectra, ranks):
    n = len(spectra)
    legend_columns = 3
    legend_rows = math.ceil(n / legend_columns)
    fig = figure_cls(
        figsize=(13.0, 4.5 + 0.17 * legend_rows), layout="constrained"
    )
    sigma_ax, energy_ax = fig.subplots(1, 2)
    colors = [_viridis(i / max(1, n - 1)) for i in range(n)]
    for color, (name, s) in zip(colors, spectra.items()):
        x = np.arange(1, len(s) + 1)
        energy = cumulative_energy(s)
        sigma_ax.semilogy(x, _normalized(s), color=color, lw=1, label=name)
        energy_ax.plot(x, energy, color=color, lw=1)
        if name in ranks:
            k = ranks[name]
            energy_ax.plot(k, energy[k - 1], "o", color=color, ms=4)
    sigma_ax.set(xlabel="index i", ylabel=r"$\sigma_i / \sigma_1$")
    sigma_ax.set_title(f"normalized singular values, {n} layers", fontsize=10)
    energy_ax.set(xlabel="rank k", ylabel="cumulative energy", ylim=(0, 1.02))
    title = "cumulative energy"
    if ranks:
        title += " (dots: chosen ranks)"
    energy_ax.set_title(title, fontsize=10)
    for ax in (sigma_ax, energy_ax):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(_integer_ticks())
    fig.legend(
        loc="outside lower center", ncols=legend_columns, fontsize=7,
        frameon=False,
    )
    return fig


def _normalized(s):
    return s / s[0] if s[0] > 0 else np.zeros_like(s)


def _integer_ticks():
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(integer=True)


def _viridis(fraction):
    from matplotlib import colormaps

    return colormaps["viridis"](0.9 * fraction)


def _layer_name(layer):
    return getattr(layer, "path", None) or layer.name


def _short(name, limit=60):
    return name if len(name) <= limit else "…" + name[-(limit - 1):]


def _natural_key(name):
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]
