"""The tensors of `adapter_model.safetensors`, grouped by module.

PEFT saves `base_model.model.<module>.lora_A.weight` `(r, in)`,
`.lora_B.weight` `(out, r)`, DoRA's `.lora_magnitude_vector` `(out,)`, and
each `modules_to_save` module's own weights as `base_model.model.<module>.
<weight name>`; AdaLoRA `.lora_A`, `.lora_B` and `.lora_E` (no `.weight`).
Read without torch (safetensors' numpy reader, bfloat16 and
float16 widened to float32); pickled `adapter_model.bin` files are refused.
"""

import dataclasses
import os

import numpy as np

from keras_lowrank.peft.peft_config import PICKLED_WEIGHTS_FILE
from keras_lowrank.peft.peft_config import WEIGHTS_FILE

ROOT = "base_model.model."
LORA_KEYS = {
    ".lora_A.weight": "lora_A",
    ".lora_B.weight": "lora_B",
    ".lora_magnitude_vector": "magnitude",
    ".lora_magnitude_vector.weight": "magnitude",  # PEFT before 0.12
    # AdaLoRA's parameters: lora_A (r, in), lora_B (out, r), lora_E (r, 1).
    ".lora_A": "lora_A",
    ".lora_B": "lora_B",
    ".lora_E": "lora_E",
}
# PEFT's factors of an Embedding (or a Conv's ...): no mapped counterpart.
OTHER_LORA_MARKERS = (".lora_embedding_A", ".lora_embedding_B", ".lora_")


@dataclasses.dataclass
class PeftWeights:
    """A PEFT weights file, grouped.

    Args:
        lora: `{module name: {"lora_A", "lora_B"[, "magnitude"]: array}}`.
        other_lora: `{module name: [keys]}` of LoRA tensors of kinds with no
            mapping (embedding factors).
        full: `{module name or key: {weight name: array}}`: every other
            tensor (`modules_to_save` weights).
        path: str. The file.
    """

    lora: dict
    other_lora: dict
    full: dict
    path: str


def read_peft_weights(folder) -> PeftWeights:
    """Reads and groups `<folder>/adapter_model.safetensors`.

    Raises:
        FileNotFoundError: no safetensors file (a pickled `.bin` is named).
        ValueError: a key not written by PEFT's `save_pretrained`, a NaN or
            Inf, a factor without its partner.
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    folder = os.fspath(folder)
    path = os.path.join(folder, WEIGHTS_FILE)
    if not os.path.isfile(path):
        if os.path.isfile(os.path.join(folder, PICKLED_WEIGHTS_FILE)):
            raise FileNotFoundError(
                f"'{folder}' holds {PICKLED_WEIGHTS_FILE}, a pickled torch file, "
                "which keras_lowrank does not unpickle. Save the adapter in "
                "PEFT with `save_pretrained(folder, safe_serialization=True)` "
                f"(the default) to get {WEIGHTS_FILE}."
            )
        raise FileNotFoundError(f"'{folder}' has no {WEIGHTS_FILE}.")
    try:
        tensors = load_file(path)
    except SafetensorError as error:
        raise ValueError(f"'{path}' is not a readable safetensors file ({error}).") from None
    lora, other_lora, full = {}, {}, {}
    for key, value in tensors.items():
        if not key.startswith(ROOT):
            raise ValueError(
                f"'{path}' has tensor '{key}', which does not start with "
                f"'{ROOT}': not a file PEFT's save_pretrained wrote for a LoRA "
                "adapter."
            )
        value = _float32(value, key, path)
        name = key[len(ROOT):]
        suffix = next((s for s in LORA_KEYS if name.endswith(s)), None)
        if suffix is not None:
            lora.setdefault(name[: -len(suffix)], {})[LORA_KEYS[suffix]] = value
            continue
        marker = next((m for m in OTHER_LORA_MARKERS if m in name), None)
        if marker is not None:
            module = name[: name.index(marker)]
            other_lora.setdefault(module, []).append(key)
            continue
        module, _, weight_name = name.rpartition(".")
        full.setdefault(module, {})[weight_name] = value
    for module, factors in lora.items():
        for needed in ("lora_A", "lora_B"):
            if needed not in factors:
                raise ValueError(
                    f"'{path}' has LoRA factors of module '{module}' without "
                    f"its {needed} ('{ROOT}{module}.{needed}.weight'): the file "
                    "is damaged."
                )
    return PeftWeights(lora=lora, other_lora=other_lora, full=full, path=path)


def _float32(value, key, path):
    if value.dtype.kind != "f":
        raise ValueError(
            f"'{path}': tensor '{key}' has dtype {value.dtype}; LoRA weights "
            "are floating point (quantized adapters do not map)."
        )
    value = np.asarray(value, np.float32)
    if not np.isfinite(value).all():
        bad = int((~np.isfinite(value)).sum())
        raise ValueError(
            f"'{path}': tensor '{key}' holds {bad} NaN or Inf value(s) of "
            f"{value.size}. Nothing was loaded."
        )
    return value
