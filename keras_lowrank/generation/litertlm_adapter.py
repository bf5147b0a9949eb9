"""LoRA at run time in LiteRT-LM: the base bundle's inputs and the adapter file.

LiteRT-LM's CPU executor feeds a LoRA adapter to the model through inputs
of its `prefill_*` and `decode` signatures named
`lora_atten_{q,k,v,o}_{a,b}_prime_weight_<layer>`: `A` (fan_in, r) and
`B` (r, fan_out) of the attention query, key, value and output
projections of every layer, the layer adding `(x·A)·B`. The rank `r` is
16 or 32 (`RUNTIME_RANKS`), read from the model's inputs.

`runtime_lora_model(model, rank)` gives the model the base bundle is
traced from: `model`'s base weights with a scale-1 LoRA of rank `r` on
every attention projection, whose factors `export_litertlm(...,
runtime_adapters=True)` turns into those inputs (zeros: the base model).

Without a LoRA file the engine leaves those inputs unset (LiteRT-LM
0.18.1: its text then varies from run to run, checked on a tiny Llama), so
the base model is run with the all-zero file of
`write_litertlm_base_adapter(bundle, path)`.

`write_litertlm_adapter(adapted, bundle, path)` writes the file the engine
loads (`create_session(lora_config=LoraConfig(lora_path=path))`): a TFLite
flatbuffer holding one tensor per input, its data outside the flatbuffer
(each `Buffer` gives an offset and size in the file), metadata `lora_rank`,
the file padded to a multiple of 4096 bytes. The runtime reads the rank
from the `buffer` field of the `lora_rank` metadata entry itself. The adapter's scale is
folded into `B`; a smaller rank is padded with zeros (which adds 0).
"""

import os
import re

import numpy as np

from keras_lowrank.adapters.adapted_model import adapters
from keras_lowrank.adapters.adapted_model import add_adapters
from keras_lowrank.adapters.named import adapter_names
from keras_lowrank.adapters.named import delete_adapter
from keras_lowrank.generation.litertlm_bundle import read_bundle_model
from keras_lowrank.surgery.layer_paths import layer_paths
from keras_lowrank.utils.atomic import atomic_path
from keras_lowrank.utils.atomic import check_target

# The ranks LiteRT-LM's CPU executor takes.
RUNTIME_RANKS = (16, 32)
# The prefix of every LoRA input name the runtime knows.
LORA_PREFIX = "lora_atten_"
_PLAIN_LORA = "lora"
_KINDS = {"query": "q", "key": "k", "value": "v", "attention_output": "o"}
# keras-hub's attention projections: Llama 3 and GPT-2
# (`transformer_layer_<i>/self_attention/...`), Gemma
# (`decoder_block_<i>/attention/...`).
_ATTENTION = re.compile(
    r"^(?:transformer_layer|decoder_block)_(\d+)/(?:self_attention|attention)/"
    r"(query|key|value|attention_output)$")
_PAGE = 4096
_ALIGN = 64


def input_names(path):
    """`(A name, B name)` of the runtime's inputs for the layer at `path`,
    or None when `path` is not an attention projection."""
    found = _ATTENTION.match(path)
    if found is None:
        return None
    stem = f"{LORA_PREFIX}{_KINDS[found.group(2)]}"
    return (f"{stem}_a_prime_weight_{found.group(1)}",
            f"{stem}_b_prime_weight_{found.group(1)}")


def runtime_rank(model, rank=True):
    """The bundle's LoRA rank: `rank` (16 or 32), or for `rank=True` the
    smallest of those that holds every adapter of `model` (16 without any).

    Raises:
        ValueError: a rank not in `RUNTIME_RANKS`, or an adapter above it.
    """
    largest = max([layer.rank for layer in adapters(model).values()] + [0])
    chosen = rank
    if rank is True:
        chosen = next((r for r in RUNTIME_RANKS if r >= largest), largest)
    if chosen not in RUNTIME_RANKS or largest > chosen:
        raise ValueError(
            f"LiteRT-LM takes runtime LoRA of rank {list(RUNTIME_RANKS)} only. "
            f"Received: runtime_adapters={rank!r} for adapters up to rank "
            f"{largest}. Merge larger adapters with klr.merge_adapters.")
    return chosen


def runtime_lora_model(model, rank):
    """`(new model, [(input name, variable)])`: `model`'s base weights (its
    adapters removed) with a scale-1 LoRA of `rank` on every attention
    projection, `B` zero (so it computes the base model), and its factors
    in input order."""
    checked_adapters(model)
    base = model
    for name in adapter_names(model):
        base = delete_adapter(base, name)
    targets = tuple(p for p in layer_paths(base) if input_names(p))
    try:
        lora = add_adapters(base, targets=targets, rank=rank, alpha=rank,
                            adapter_name="litertlm_runtime")
    except ValueError as error:  # a projection narrower than `rank`
        raise ValueError(
            f"LiteRT-LM's runtime LoRA takes rank {list(RUNTIME_RANKS)} "
            f"inputs on every attention projection, and rank {rank} does "
            f"not fit one of this model's: {error.args[0].split(' Use a rank')[0]} "
            "Export it without runtime_adapters (the adapters merged), or "
            "as an ONNX Runtime GenAI folder, whose runtime adapters take "
            "any rank.") from None
    inputs = []
    for path, layer in adapters(lora).items():
        name_a, name_b = input_names(path)
        inputs += [(name_a, layer.lora_a), (name_b, layer.lora_b)]
    return lora, inputs


def checked_adapters(model):
    """`{path: layer}` of `model`'s adapters, each one plain LoRA adapter
    on an attention projection.

    Raises:
        ValueError: a variant (DoRA, ...), several adapters on a layer, or
            an adapter on another layer, naming the layer.
    """
    found = adapters(model)
    for path, layer in found.items():
        if layer.spec.variant != _PLAIN_LORA or layer.more_specs:
            raise ValueError(
                "LiteRT-LM runtime LoRA takes one plain LoRA adapter per "
                f"layer. Received: layer '{path}' with variant="
                f"{layer.spec.variant!r} and adapters "
                f"{list(layer.adapter_names)}. Merge it into the base with "
                "klr.merge_adapters before export.")
        if input_names(path) is None:
            raise ValueError(
                "LiteRT-LM runtime LoRA adapts the attention query, key, "
                f"value and output projections only. Received: an adapter on "
                f"'{path}'. Merge it into the base with klr.merge_adapters "
                "before export.")
    return found


def bundle_lora_inputs(bundle):
    """`{input name: shape}` of the LoRA inputs of the `.litertlm` file
    `bundle`'s `decode` signature (empty without runtime adapters)."""
    from ai_edge_litert import schema_py_generated as schema

    flatbuffer = read_bundle_model(bundle)
    model = schema.Model.GetRootAs(flatbuffer, 0)
    for i in range(model.SignatureDefsLength()):
        signature = model.SignatureDefs(i)
        if signature.SignatureKey() != b"decode":
            continue
        graph = model.Subgraphs(signature.SubgraphIndex())
        inputs = [signature.Inputs(j) for j in range(signature.InputsLength())]
        return {t.Name().decode(): tuple(graph.Tensors(t.TensorIndex()).ShapeAsNumpy())
                for t in inputs if t.Name().decode().startswith(LORA_PREFIX)}
    raise ValueError(f"{bundle} has no `decode` signature.")


def litertlm_adapter_arrays(model, bundle_inputs):
    """`{input name: float32 array}` of `model`'s adapters for a bundle with
    `bundle_inputs` (`bundle_lora_inputs`): the scale folded into `B`,
    zeros for the layers `model` does not adapt.

    Raises:
        ValueError: see `checked_adapters`; no adapters; a bundle without
            LoRA inputs; a rank above the bundle's; factors of another
            shape (an adapter of another base).
    """
    if not bundle_inputs:
        raise ValueError(
            "The bundle was exported without runtime_adapters=True: it takes "
            "no LoRA inputs.")
    layers = checked_adapters(model)
    if not layers:
        raise ValueError(
            f"write_litertlm_adapter needs a model with LoRA adapters; "
            f"{type(model).__name__} has none.")
    rank = next(shape[1] for name, shape in bundle_inputs.items()
                if "_a_prime_" in name)
    arrays = {name: np.zeros(shape, np.float32)
              for name, shape in bundle_inputs.items()}
    for path, layer in layers.items():
        name_a, name_b = input_names(path)
        a = np.asarray(layer.lora_a.numpy(), np.float32)  # (fan_in, r)
        b = np.asarray(layer.lora_b.numpy(), np.float32)  # (r, fan_out)
        if a.shape[1] > rank:
            raise ValueError(
                f"Layer '{path}': the adapter's rank {a.shape[1]} is above "
                f"the bundle's {rank} (LiteRT-LM takes {list(RUNTIME_RANKS)}). "
                "Export the base with runtime_adapters=32, or merge it with "
                "klr.merge_adapters.")
        if (name_a not in arrays or arrays[name_a].shape[0] != a.shape[0]
                or arrays[name_b].shape[1] != b.shape[1]):
            raise ValueError(
                f"Layer '{path}': the adapter's factors {a.shape} x {b.shape} "
                f"do not fit the bundle's {bundle_inputs.get(name_a)} x "
                f"{bundle_inputs.get(name_b)}: an adapter of another base.")
        arrays[name_a][:, :a.shape[1]] = a
        arrays[name_b][:b.shape[0]] = b * float(layer.scale)
    return arrays


def write_litertlm_adapter(adapted_lm, artifact, path) -> int:
    """Writes `adapted_lm`'s adapters as the LoRA file LiteRT-LM loads for
    the bundle `artifact`.

    Args:
        adapted_lm: the causal LM with plain LoRA adapters on attention
            projections (PEFT folders come in with
            `klr.load_peft_adapters`), rank at most the bundle's.
        artifact: str. The `.litertlm` file written with
            `export_litertlm(..., runtime_adapters=True)`.
        path: str. The adapter file to write (atomically).

    Returns:
        int. The bytes written.

    Raises:
        ValueError: see `litertlm_adapter_arrays`; nothing is written.

    Example:
    ```python
    export_litertlm(lm, "base.litertlm", tokenizer=tok, runtime_adapters=True)
    write_litertlm_adapter(adapted_lm, "base.litertlm", "task.lora.tflite")
    # engine.create_session(lora_config=litert_lm.LoraConfig(
    #     lora_path="task.lora.tflite"))
    ```
    """
    path = os.fspath(path)
    check_target(path)
    arrays = litertlm_adapter_arrays(adapted_lm, bundle_lora_inputs(artifact))
    rank = next(a.shape[1] for n, a in arrays.items() if "_a_prime_" in n)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as file:
            file.write(adapter_file_bytes(arrays, rank))
    return os.path.getsize(path)


def write_litertlm_base_adapter(artifact, path) -> int:
    """Writes the all-zero LoRA file of the bundle `artifact`: loaded, the
    bundle computes its base model.

    A session without a LoRA file leaves the bundle's LoRA inputs unset
    (LiteRT-LM 0.18.1: the engine's output then varies from run to run),
    so an app runs the base model with this file.

    Returns:
        int. The bytes written.
    """
    path = os.fspath(path)
    check_target(path)
    shapes = bundle_lora_inputs(artifact)
    if not shapes:
        raise ValueError(
            "The bundle was exported without runtime_adapters=True: it takes "
            "no LoRA inputs.")
    rank = next(s[1] for n, s in shapes.items() if "_a_prime_" in n)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as file:
            file.write(adapter_file_bytes(
                {n: np.zeros(s, np.float32) for n, s in shapes.items()}, rank))
    return os.path.getsize(path)


def adapter_file_bytes(arrays, rank):
    """The LoRA file of `arrays` (`{name: float32 array}`): the flatbuffer,
    then each tensor's data at a 64-byte aligned offset, padded to 4096."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    names = sorted(arrays)
    data = [np.ascontiguousarray(arrays[n], np.float32).tobytes() for n in names]

    def flatbuffer(offsets):
        buffers = [schema.BufferT()]
        for offset, chunk in zip(offsets, data):
            buffer = schema.BufferT()
            buffer.offset, buffer.size = offset, len(chunk)
            buffers.append(buffer)
        graph = schema.SubGraphT()
        graph.tensors = []
        for i, name in enumerate(names):
            tensor = schema.TensorT()
            tensor.name, tensor.shape = name, list(arrays[name].shape)
            tensor.type, tensor.buffer = schema.TensorType.FLOAT32, i + 1
            graph.tensors.append(tensor)
        graph.inputs, graph.outputs, graph.operators = [], [], []
        # The runtime reads the rank from the metadata's buffer field
        # itself, not from a buffer (`LoraData::GetLoRARank`).
        metadata = schema.MetadataT()
        metadata.name, metadata.buffer = "lora_rank", rank
        model = schema.ModelT()
        model.version, model.subgraphs, model.buffers = 3, [graph], buffers
        model.metadata, model.description = [metadata], "LoRA"
        builder = flatbuffers.Builder(1024)
        builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
        return bytes(builder.Output())

    # Offsets change the flatbuffer's size only within their fixed width:
    # lay the data out after a first pass, then write the final one.
    head = len(flatbuffer([1] * len(data)))
    offsets, end = [], _aligned(head, _ALIGN)
    for chunk in data:
        offsets.append(end)
        end = _aligned(end + len(chunk), _ALIGN)
    head_bytes = flatbuffer(offsets)
    if len(head_bytes) > offsets[0]:
        raise RuntimeError("The LoRA flatbuffer grew past its data.")
    out = bytearray(_aligned(end, _PAGE))
    out[:len(head_bytes)] = head_bytes
    for offset, chunk in zip(offsets, data):
        out[offset:offset + len(chunk)] = chunk
    return bytes(out)


def _aligned(value, alignment):
    return -(-value // alignment) * alignment
