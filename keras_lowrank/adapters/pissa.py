"""PiSSA initialisation: adapters start as the principal part of W.

PiSSA (Meng et al., 2024) factors each kernel `W = U Σ Vᵀ` and starts the
adapter at the top-r singular triplets, `s·A·B = U_r Σ_r V_rᵀ`, while the
frozen kernel keeps the residual `W - U_r Σ_r V_rᵀ`. The model's outputs are
unchanged at init, but training moves the directions that matter most, so it
converges faster than zero-init LoRA when the task needs more than a small
nudge (larger ranks, full fine-tuning-like gains); merged it is the same model
shape as plain LoRA. It costs one SVD per adapted layer at setup.

The residual kernel is part of the trained model. Adapter files stay small
by not storing it: the adapter records `pissa_rank`, and `load_adapters`
recomputes the same residual from the base model's kernel
(`remove_principal_part`), bit for bit, before it loads the factors.
"""

from keras import ops

from keras_lowrank.svd.factorization import balanced_factors
from keras_lowrank.svd.factorization import truncated_triplets


def pissa_init(adapter):
    """Re-initialises a built `LoRAAdapter` in place: PiSSA factors, residual W.

    Only for adapters just created on a copy (as `add_adapters` does): the
    wrapped kernel is overwritten with the residual.

    Args:
        adapter: LoRAAdapter. A built adapter on a copy of the user's layer.

    Example:
    ```python
    model = klr.add_adapters(model, rank=16, init="pissa")  # calls this
    ```
    """
    u, s, vt = remove_principal_part(adapter, adapter.rank)
    a, b = balanced_factors(u, s, vt, scale=adapter.scale)  # s·a·b = U_r Σ_r V_rᵀ
    adapter.lora_a.assign(a.astype("float32"))
    adapter.lora_b.assign(b.astype("float32"))


def remove_principal_part(adapter, rank):
    """Replaces the wrapped kernel `W` by `W - U_r Σ_r V_rᵀ`; records `rank`.

    Deterministic for a given kernel, so a base model loaded afresh gets the
    very kernel the adapter was trained on.

    Args:
        adapter: LoRAAdapter on a copy of the user's layer (changed in place).
        rank: int. How many singular triplets to move out of the kernel.

    Returns:
        `(u, s, vt)`: the removed triplets, float64.
    """
    layout = adapter.layout
    kernel_var = adapter.base_kernel
    kernel = ops.convert_to_numpy(kernel_var).astype("float64")
    u, s, vt = truncated_triplets(kernel, rank=rank, layout=layout)
    matrix = ops.convert_to_numpy(layout.to_matrix(kernel))  # (fan_in, fan_out)
    residual = matrix - (u * s) @ vt
    residual_kernel = ops.convert_to_numpy(layout.from_matrix(residual))
    kernel_var.assign(residual_kernel.astype(kernel_var.dtype))
    adapter.spec = adapter.spec.replace(pissa_rank=int(rank))
    return u, s, vt
