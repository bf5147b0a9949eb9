"""The registry of model families PEFT adapters map onto: BERT, Llama, GPT-2.

A new family is one module defining a `FamilyMap` (see `bert.py`), listed
in `FAMILIES`, plus its tests in `tests/peft/`.
"""

from keras_lowrank.peft import bert
from keras_lowrank.peft import gpt2
from keras_lowrank.peft import llama

FAMILIES = (bert.FAMILY, llama.FAMILY, gpt2.FAMILY)


def family_of(model, function="load_peft_adapters"):
    """The `FamilyMap` of a keras-hub backbone or task.

    Raises:
        ValueError: `model` is not a keras-hub model of a mapped family.
    """
    import keras_hub

    backbone = getattr(model, "backbone", None) or model
    for family in FAMILIES:
        if isinstance(backbone, getattr(keras_hub.models, family.backbone_class)):
            return family
    raise ValueError(
        f"{function} maps PEFT module names onto keras-hub models of the "
        f"families {[f.name for f in FAMILIES]} (backbones "
        f"{[f.backbone_class for f in FAMILIES]}, or tasks holding one). "
        f"Received: model '{model.name}' of class {type(model).__name__}"
        + (f" with a {type(backbone).__name__}" if backbone is not model else "")
        + "."
    )


def family_for_model_type(model_type):
    """The `FamilyMap` of an HF `config.json` `model_type`.

    Raises:
        ValueError: no family maps that model type.
    """
    for family in FAMILIES:
        if family.model_type == model_type:
            return family
    raise ValueError(
        f"PEFT adapters map onto keras-hub models of the HF model types "
        f"{[f.model_type for f in FAMILIES]}. Received: model_type={model_type!r}"
    )
