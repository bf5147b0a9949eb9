"""Truncated SVD of Dense and EinsumDense kernels.

Every kernel is viewed as the `(fan_in, fan_out)` matrix of its
`KernelLayout`, the same flattening the LoRA adapters use, so a factor pair
`left (fan_in, k)`, `right (k, fan_out)` from here fits `KernelLayout.
apply_factors` and the factorized layers directly. The numerics run in float64
(numpy); factors come back as float32.
"""

import keras
import numpy as np

from keras_lowrank.svd.kernel_layout import KernelLayout
from keras_lowrank.svd.rank_selection import select_rank


def kernel_matrix(layer) -> tuple[np.ndarray, KernelLayout]:
    """The float64 `(fan_in, fan_out)` matrix of a built Dense/EinsumDense.

    Args:
        layer: keras.layers.Dense or keras.layers.EinsumDense. A built layer.

    Returns:
        `(matrix, layout)`: the kernel as a float64 numpy matrix, and the
        `KernelLayout` that maps it back onto the kernel's shape.

    Raises:
        TypeError: when `layer` is neither a Dense nor an EinsumDense.
        ValueError: when the layer is not built, or is quantized (its stored
            kernel is not the float kernel it applies).

    Example:
    ```python
    dense = keras.layers.Dense(8)
    dense.build((None, 16))
    matrix, layout = kernel_matrix(dense)  # matrix.shape == (16, 8)
    ```
    """
    if not isinstance(layer, (keras.layers.Dense, keras.layers.EinsumDense)):
        raise TypeError(
            "Expected a keras.layers.Dense or keras.layers.EinsumDense layer. "
            f"Received: layer '{getattr(layer, 'name', layer)}' of class "
            f"{type(layer).__name__}"
        )
    if not layer.built:
        raise ValueError(
            f"Layer '{layer.name}' is not built, so it has no kernel yet. "
            "Build it first, e.g. by calling it on an input."
        )
    if layer.quantization_mode is not None:
        raise ValueError(
            f"Layer '{layer.path}' is quantized "
            f"(quantization_mode='{layer.quantization_mode}'); factor the "
            "float layer before quantizing it."
        )
    kernel = keras.ops.convert_to_numpy(layer.kernel).astype(np.float64)
    if isinstance(layer, keras.layers.Dense):
        layout = KernelLayout.for_dense(kernel.shape)
    else:
        layout = KernelLayout.for_einsum(layer.equation, kernel.shape)
    return _as_matrix(kernel, layout), layout


def singular_values(w, layout: KernelLayout | None = None) -> np.ndarray:
    """Singular values of a matrix, a kernel, or a layer's kernel, descending.

    Args:
        w: a 2-D matrix (array, tensor or variable), a kernel of any rank
            together with `layout`, or a built Dense/EinsumDense layer.
        layout: KernelLayout. The matrix view of `w` when `w` is a kernel of an
            EinsumDense layer. Not allowed with a layer.

    Returns:
        float64 numpy array of length `min(fan_in, fan_out)`, descending.

    Raises:
        ValueError: when `w` is not 2-D and no `layout` is given, or its shape
            differs from `layout.kernel_shape`.

    Example:
    ```python
    s = singular_values(np.diag([3.0, 2.0, 1.0]))  # array([3., 2., 1.])
    ```
    """
    return np.linalg.svd(_to_matrix(w, layout), compute_uv=False)


def truncated_triplets(
    w,
    rank: int | None = None,
    energy: float | None = None,
    layout: KernelLayout | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The top-`k` singular triplets of `w`, in float64: `u·diag(s)·vt ≈ w`.

    The one place where keras_lowrank runs a full SVD: `truncated_svd`,
    `LowRankDense.from_layer`, PiSSA and `shrink_adapters` all read it.

    Args:
        w: a 2-D matrix (array, tensor or variable), a kernel of any rank
            together with `layout`, or a built Dense/EinsumDense layer.
        rank: int. The number of singular values kept, in
            `[1, min(fan_in, fan_out)]`.
        energy: float in (0, 1]. Keep the smallest rank whose singular values
            hold this share of `sum σ²` (see `select_rank`).
        layout: KernelLayout. The matrix view of `w`, for EinsumDense kernels.

    Returns:
        `(u, s, vt)`: float64 arrays of shapes `(fan_in, k)`, `(k,)` and
        `(k, fan_out)`, `s` descending.

    Raises:
        ValueError: when not exactly one of `rank` and `energy` is given, when
            `rank` is not a positive integer at most `min(fan_in, fan_out)`,
            or when `w` does not fit `layout`.

    Example:
    ```python
    u, s, vt = truncated_triplets(np.diag([3.0, 2.0, 1.0]), rank=2)
    s  # array([3., 2.])
    ```
    """
    if (rank is None) == (energy is None):
        raise ValueError(
            "Expected exactly one of `rank` or `energy`. "
            f"Received: rank={rank}, energy={energy}"
        )
    matrix = _to_matrix(w, layout)
    max_rank = min(matrix.shape)
    if rank is not None and not (_is_int(rank) and 1 <= rank <= max_rank):
        raise ValueError(
            "Expected `rank` to be a positive integer at most "
            f"min(fan_in, fan_out) = min{matrix.shape} = {max_rank}. "
            f"Received: rank={rank!r}"
        )
    u, s, vt = np.linalg.svd(matrix, full_matrices=False)
    k = int(rank) if rank is not None else select_rank(s, energy=energy)
    return u[:, :k], s[:k], vt[:k]


def truncated_svd(
    w,
    rank: int | None = None,
    energy: float | None = None,
    layout: KernelLayout | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The best rank-`k` factors of `w`: `left @ right ≈ w`.

    `left = U_k·Σ_k` is `(fan_in, k)` and `right = V_kᵀ` is `(k, fan_out)`; by
    the Eckart–Young theorem no rank-`k` pair has a smaller Frobenius error,
    which is `sqrt(sum of the dropped σ²)`.

    Args:
        w: a 2-D matrix (array, tensor or variable), a kernel of any rank
            together with `layout`, or a built Dense/EinsumDense layer.
        rank: int. The number of singular values kept, in
            `[1, min(fan_in, fan_out)]`.
        energy: float in (0, 1]. Keep the smallest rank whose singular values
            hold this share of `sum σ²` (see `select_rank`).
        layout: KernelLayout. The matrix view of `w`, for EinsumDense kernels.

    Returns:
        `(left, right)`: float32 numpy arrays of shapes `(fan_in, k)` and
        `(k, fan_out)`.

    Raises:
        ValueError: as `truncated_triplets`.

    Example:
    ```python
    left, right = truncated_svd(layer.kernel, rank=32)
    relative_error(layer.kernel, left, right)  # float, e.g. 0.41
    ```
    """
    u, s, vt = truncated_triplets(w, rank=rank, energy=energy, layout=layout)
    left = u * s  # (fan_in, k)
    return left.astype(np.float32), vt.astype(np.float32)


def balanced_factors(u, s, vt, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Splits `u·diag(s)·vt` into LoRA factors with `scale·a·b` equal to it.

    Each factor takes `sqrt(s / scale)`, so `a` and `b` have equal column and
    row norms, the split LoRA training is best conditioned on. A zero singular
    value keeps its unit column in `a` and a zero row in `b`: the product is
    unchanged and the direction can still be trained (as LoRA's `B = 0` init).

    Args:
        u: `(fan_in, k)` array with orthonormal columns.
        s: `(k,)` non-negative singular values.
        vt: `(k, fan_out)` array with orthonormal rows.
        scale: float > 0. The adapter's scale `s = alpha / rank`.

    Returns:
        `(a, b)`: float64 arrays `(fan_in, k)` and `(k, fan_out)`.

    Example:
    ```python
    u, s, vt = truncated_triplets(kernel, rank=8)
    a, b = balanced_factors(u, s, vt, scale=adapter.scale)
    ```
    """
    root = np.sqrt(np.asarray(s, dtype=np.float64) / scale)
    left_root = np.where(root > 0, root, 1.0)
    a = np.asarray(u, dtype=np.float64) * left_root  # (fan_in, k)
    b = root[:, None] * np.asarray(vt, dtype=np.float64)  # (k, fan_out)
    return a, b


def relative_error(w, left, right, layout: KernelLayout | None = None) -> float:
    """`‖w − left·right‖_F / ‖w‖_F`, in float64.

    Args:
        w: the 2-D matrix, or a kernel together with `layout`.
        left: `(fan_in, k)` factor.
        right: `(k, fan_out)` factor.
        layout: KernelLayout. The matrix view of `w`, for EinsumDense kernels.

    Returns:
        float. 0.0 for an exact reconstruction (also of a zero matrix); `inf`
        when `w` is zero and the product is not.

    Raises:
        ValueError: when the product's shape differs from the matrix of `w`.

    Example:
    ```python
    left, right = truncated_svd(w, rank=8)
    relative_error(w, left, right)
    ```
    """
    matrix = _to_matrix(w, layout)
    product = _numpy64(left) @ _numpy64(right)
    if product.shape != matrix.shape:
        raise ValueError(
            f"left @ right has shape {product.shape} but the matrix of `w` "
            f"has shape {matrix.shape}."
        )
    error = np.linalg.norm(matrix - product)
    norm = np.linalg.norm(matrix)
    if norm == 0.0:
        return 0.0 if error == 0.0 else float("inf")
    return float(error / norm)


def _to_matrix(w, layout):
    if isinstance(w, keras.layers.Layer):
        if layout is not None:
            raise ValueError(
                "`layout` is taken from the layer itself; pass it only with "
                f"a kernel. Received: layer '{w.name}' and layout={layout}"
            )
        return kernel_matrix(w)[0]
    return _as_matrix(_numpy64(w), layout)


def _as_matrix(kernel, layout):
    if layout is None:
        if kernel.ndim != 2:
            raise ValueError(
                "Expected a 2-D matrix, or a kernel together with its "
                f"`layout=KernelLayout(...)`. Received: shape {kernel.shape}"
            )
        return kernel
    if tuple(kernel.shape) != layout.kernel_shape:
        raise ValueError(
            f"The kernel has shape {tuple(kernel.shape)} but `layout` "
            f"describes a kernel of shape {layout.kernel_shape}."
        )
    return keras.ops.convert_to_numpy(layout.to_matrix(kernel))


def _numpy64(x):
    return np.asarray(keras.ops.convert_to_numpy(x), dtype=np.float64)


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)
