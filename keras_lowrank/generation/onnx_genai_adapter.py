"""`write_onnx_genai_adapter`: a model's LoRA adapters as the `.onnx_adapter`
file ONNX Runtime GenAI switches in at run time.

A folder exported with `export_onnx_genai(..., runtime_adapters=True)`
takes every adapted layer's factors as graph inputs named after the layer
path (`<path>/lora_a` `(fan_in, rank)`, `<path>/lora_b` `(rank, fan_out)`),
each with a zero initializer of the same name: a session without an
adapter runs the base model. The layer computes `base + s·(x·A)·B` with the
scale `s` of the exported adapter baked in, so a file's `B` is scaled by
`s_adapter / s_export`. The shapes are fixed in the graph (GenAI feeds the
adapter's tensors to those inputs as they are), so a smaller rank is padded
with zeros, which add nothing. The layers, ranks and scales are kept beside
the model in `lora_inputs.json`.
"""

import dataclasses
import json
import os

from keras_lowrank.generation.generator_spec import adapter_input_names
from keras_lowrank.generation.runtime_adapters import runtime_adapter_arrays
from keras_lowrank.generation.runtime_adapters import runtime_factors
from keras_lowrank.utils.atomic import atomic_path
from keras_lowrank.utils.atomic import check_target
from keras_lowrank.utils.optional import import_optional

ADAPTER_INPUTS_FILE = "lora_inputs.json"
ADAPTER_SUFFIX = ".onnx_adapter"
_VERSION = 1


def factor_input_names(path):
    """The graph input names of layer `path`'s factors `A` and `B`."""
    return f"{path}/lora_a", f"{path}/lora_b"


@dataclasses.dataclass(frozen=True)
class GenAIAdapterInputs:
    """The factor inputs of a GenAI folder exported with runtime adapters.

    Args:
        adapters: tuple. Per adapted layer `(path, fan_in, rank, fan_out,
            scale)` (`runtime_adapters.adapter_entries`).
        model: str. The exported model's class name.
    """

    adapters: tuple
    model: str = ""

    def input_shapes(self):
        """`{input name: shape}` of the factor inputs, in graph order."""
        shapes = {}
        for path, fan_in, rank, fan_out, _ in self.adapters:
            name_a, name_b = factor_input_names(path)
            shapes[name_a], shapes[name_b] = (fan_in, rank), (rank, fan_out)
        return shapes

    def write(self, folder):
        with open(os.path.join(folder, ADAPTER_INPUTS_FILE), "w",
                  encoding="utf-8") as file:
            json.dump({"version": _VERSION, "model": self.model,
                       "adapters": [list(e) for e in self.adapters]}, file, indent=1)

    @classmethod
    def read(cls, folder) -> "GenAIAdapterInputs":
        """The inputs of `folder`; raises ValueError for a folder exported
        without runtime adapters."""
        path = os.path.join(folder, ADAPTER_INPUTS_FILE)
        if not os.path.isfile(path):
            raise ValueError(
                f"{folder!r} is not a GenAI folder exported with "
                f"runtime_adapters=True: it has no {ADAPTER_INPUTS_FILE}, so "
                "its model takes no adapter inputs.")
        with open(path, encoding="utf-8") as file:
            fields = json.load(file)
        return cls(tuple((str(p), int(i), int(r), int(o), float(s))
                         for p, i, r, o, s in fields["adapters"]),
                   str(fields.get("model", "")))


def genai_adapter_arrays(model, inputs):
    """`{input name: float32 array}` of `model`'s adapters for `inputs`
    (`B` scaled to the exported scale, a smaller rank padded with zeros).

    Raises:
        ValueError: a variant (DoRA) or several adapters on a layer, a layer
            without inputs in the folder, a factor of another shape, a rank
            above the folder's.
    """
    layers = dict(runtime_factors(model, "write_onnx_genai_adapter"))
    known = [entry[0] for entry in inputs.adapters]
    unknown = sorted(set(layers) - set(known))
    if unknown:
        raise ValueError(
            f"The model adapts layers the GenAI folder takes no factors for: "
            f"{unknown}. Merge those adapters into the base with "
            f"klr.merge_adapters before export, or export the folder from a "
            f"model adapting them. The folder's layers: {known}")
    arrays = runtime_adapter_arrays(model, inputs)
    named = {}
    for i, (path, *_) in enumerate(inputs.adapters):
        for old, new in zip(adapter_input_names(i), factor_input_names(path)):
            named[new] = arrays[old]
    return named


def write_onnx_genai_adapter(model, folder, path) -> int:
    """Writes `model`'s adapters as the `.onnx_adapter` file of `folder`.

    Args:
        model: the adapted causal LM: one plain LoRA adapter per layer, on
            the folder's layers or a subset, rank at most the folder's.
        folder: str. A folder written by `export_onnx_genai(...,
            runtime_adapters=True)`.
        path: str. The `.onnx_adapter` file to write (atomically).

    Returns:
        int. The bytes written.

    Raises:
        ValueError: a path not ending in .onnx_adapter, a folder without
            adapter inputs, or see `genai_adapter_arrays`; nothing is written.

    Example:
    ```python
    export_onnx_genai(task_a, "base-genai", runtime_adapters=True,
                      tokenizer="tokenizer.json")
    write_onnx_genai_adapter(task_b, "base-genai", "task_b.onnx_adapter")
    model = og.Model("base-genai")
    adapters = og.Adapters(model)
    adapters.load("task_b.onnx_adapter", "task_b")
    generator = og.Generator(model, og.GeneratorParams(model))
    generator.set_active_adapter(adapters, "task_b")
    ```
    """
    path = os.fspath(path)
    if not path.endswith(ADAPTER_SUFFIX):
        raise ValueError(
            f"`path` must end in {ADAPTER_SUFFIX}. Received: path={path!r}")
    check_target(path)
    arrays = genai_adapter_arrays(model, GenAIAdapterInputs.read(os.fspath(folder)))
    ort = import_optional("onnxruntime", "to write ONNX Runtime adapters")
    adapter = ort.AdapterFormat()
    adapter.set_adapter_version(_VERSION)
    adapter.set_model_version(_VERSION)
    adapter.set_parameters({name: ort.OrtValue.ortvalue_from_numpy(array)
                            for name, array in arrays.items()})
    with atomic_path(path) as tmp:
        adapter.export_adapter(tmp)
    return os.path.getsize(path)
