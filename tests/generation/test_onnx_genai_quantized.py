"""`export_onnx_genai(..., quantize="int4" | "int8")`: weight-only
MatMulNBits folders, run by the real `onnxruntime_genai` and judged on
next-token agreement with Keras (teacher forced), as LiteRT's int8 is.

One tiny Llama 3 (64 wide: every weight spans two or more blocks of 32),
one Keras reference and one export per mode, shared by the module.
"""

import json
import os

import numpy as np
import pytest

from keras_lowrank.generation import check_runtime_arguments
from keras_lowrank.generation.generation_verification import GenerationVerificationError
from keras_lowrank.generation.onnx_genai_check import GenAIGenerator
from keras_lowrank.generation.onnx_genai_export import export_onnx_genai
from tests.generation.test_onnx_genai import write_letter_tokenizer

MAX_LENGTH = 64
NEW_TOKENS = 16
START = 1
PROMPTS = ["hello there", "The capital of France is", "Once upon a time",
           "My favourite colours are red and"]
# Two layers of q, k, v, o, gate, up and down projections, and the head.
LINEAR_LAYERS = 15
# Their float32 weights: 2 x (64x64 + 2 x 64x32 + 64x64 + 3 x 64x128) + 64x64.
LINEAR_FLOAT_BYTES = 4 * (2 * (4096 + 4096 + 4096 + 3 * 8192) + 4096)
# The random tiny model has near-tied logits; int4 agrees less (see below).
INT4_MIN_AGREEMENT = 0.7


@pytest.fixture(scope="module")
def model():
    import keras
    import keras_hub

    keras.utils.set_random_seed(7)
    backbone = keras_hub.models.Llama3Backbone(
        vocabulary_size=64, num_layers=2, num_query_heads=4,
        num_key_value_heads=2, hidden_dim=64, intermediate_dim=128)
    return keras_hub.models.Llama3CausalLM(backbone=backbone, preprocessor=None)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return write_letter_tokenizer(str(tmp_path_factory.mktemp("letters")))


@pytest.fixture(scope="module")
def reference(model, references):
    # Every export checks the same prompts: Keras generates them once.
    return references(model, MAX_LENGTH)


@pytest.fixture(scope="module")
def export(model, tokenizer, reference, tmp_path_factory):
    """`export(quantize, **options)`: (report, folder), each built once."""
    root = tmp_path_factory.mktemp("genai_quantized")
    done = {}

    def get(quantize, **options):
        key = (quantize, tuple(sorted(options.items())))
        if key not in done:
            folder = str(root / f"{quantize}_{len(done)}")
            report = export_onnx_genai(
                model, folder, max_length=MAX_LENGTH, tokenizer=tokenizer,
                start_token_id=START, prompts=PROMPTS,
                max_new_tokens=NEW_TOKENS, reference=reference,
                quantize=quantize, **options)
            done[key] = report, folder
        return done[key]

    return get


def _int4(export):
    return export("int4", min_agreement=INT4_MIN_AGREEMENT)


def _graph(folder):
    import onnx

    return onnx.load(os.path.join(folder, "model.onnx"))


def _linear_bytes(folder):
    """`(quantized, float)`: the bytes of the MatMulNBits weights, scales
    and zero points, and of the same K x N weights in float32."""
    model = _graph(folder)
    sizes = {t.name: len(t.raw_data) or 4 * int(np.prod(t.dims))
             for t in model.graph.initializer}
    quantized = float_bytes = 0
    for node in model.graph.node:
        if node.op_type == "MatMulNBits":
            quantized += sum(sizes[name] for name in node.input[1:] if name)
            shape = {a.name: a.i for a in node.attribute}
            float_bytes += 4 * shape["K"] * shape["N"]
    return quantized, float_bytes


# === The folders run in GenAI and agree with Keras ===

@pytest.mark.parametrize("quantize, bits", [("int8", 8), ("int4", 4)])
def test_every_linear_layer_is_matmulnbits(export, quantize, bits):
    report, folder = _int4(export) if bits == 4 else export(quantize)
    nodes = _graph(folder).graph.node
    quantized = [n for n in nodes if n.op_type == "MatMulNBits"]
    assert report.quantize == quantize
    assert report.quantized_matmuls == len(quantized) == LINEAR_LAYERS
    assert {a.i for n in quantized for a in n.attribute if a.name == "bits"} == {bits}
    assert {a.i for n in quantized for a in n.attribute
            if a.name == "block_size"} == {32}
    # Only the attention's two activation MatMuls per layer stay float.
    assert sum(n.op_type == "MatMul" for n in nodes) == 4
    assert not any(n.op_type == "Gemm" for n in nodes)
    assert report.files == ("model.onnx", "genai_config.json",
                            "tokenizer.json", "tokenizer_config.json")


def test_int8_agrees_with_keras(export):
    report, folder = export("int8")
    # Measured: 64/64 free-running (4/4 prompts), 64/64 teacher forced.
    assert report.verified and report.tokens_compared == len(PROMPTS) * NEW_TOKENS
    assert report.next_token_agreement >= 0.95
    assert report.agreement >= 0.9
    assert report.prompts_matching >= 3
    assert (f"next-token agreement {report.next_token_agreement:.3f}"
            in str(report))


def test_int4_agrees_with_keras_on_most_next_tokens(export):
    report, folder = _int4(export)
    # A random tiny model has near-tied logits, and int4 blocks move
    # them: measured 51/64 teacher forced (0.797), 37/64 free running
    # (0/4 prompts whole: each parts from Keras at a near tie).
    assert report.tokens_compared == len(PROMPTS) * NEW_TOKENS
    assert INT4_MIN_AGREEMENT <= report.next_token_agreement < 1.0
    assert report.next_tokens_matching >= report.tokens_matching
    assert "int4 weights (MatMulNBits x15)" in str(report)


@pytest.mark.parametrize("quantize", ["int8", "int4"])
def test_quantized_folder_runs_in_genai(export, quantize):
    report, folder = _int4(export) if quantize == "int4" else export(quantize)
    _, float_folder = export(None)
    with open(os.path.join(folder, "genai_config.json")) as file:
        config = json.load(file)
    with open(os.path.join(float_folder, "genai_config.json")) as file:
        assert config == json.load(file)
    tokens = GenAIGenerator(folder).greedy([START, 10, 11, 12], 8).tokens
    assert len(tokens) >= 1 and all(0 <= t < 64 for t in tokens)


def test_quantized_weights_are_smaller(export):
    float_report, float_folder = export(None)
    int8_report, int8_folder = export("int8")
    int4_report, int4_folder = _int4(export)
    int8_bytes, linear = _linear_bytes(int8_folder)
    int4_bytes, int4_linear = _linear_bytes(int4_folder)
    # Per block of 32 weights: 32 bytes and a zero point of 1 (int8), or 16
    # and a half (int4), and a float32 scale, against 128 bytes in
    # float32: 0.289 and 0.160. Measured: 311,296 bytes of linear weights
    # in float32, 89,984 in int8 (0.289) and 49,856 in int4 (0.160).
    assert linear == int4_linear == LINEAR_FLOAT_BYTES
    assert int8_bytes <= 0.295 * linear
    assert int4_bytes <= 0.165 * linear
    # model.onnx keeps the float embedding, norms and graph: measured
    # 454 KB float, 234 KB int8 (0.52x), 194 KB int4 (0.43x).
    for report, bound in ((int8_report, 0.55), (int4_report, 0.45)):
        assert report.float_model_bytes == pytest.approx(
            float_report.model_bytes, rel=0.01)
        assert report.model_bytes <= bound * report.float_model_bytes
        assert report.size_bytes < float_report.size_bytes
    assert int4_report.model_bytes < int8_report.model_bytes


# === Runtime adapters on a quantized base ===

def test_int8_base_with_runtime_adapters(model, tokenizer, references, tmp_path):
    """int8 base weights, float32 LoRA inputs: the export's own checks (no
    adapter against the base model, then the model's own adapter file),
    teacher forced; a second adapter file switched in follows its model."""
    from keras_lowrank.adapters.adapted_model import add_adapters
    from keras_lowrank.generation.generation_verification import verify_generation
    from keras_lowrank.generation.onnx_genai_adapter import write_onnx_genai_adapter
    from keras_lowrank.generation.onnx_genai_quantize import GenAITeacherForcing
    from tests.tiny_models import random_factors

    task_a = random_factors(add_adapters(model, rank=4, alpha=8.0), 1, spread=0.8)
    task_b = random_factors(add_adapters(model, rank=2, alpha=2.0), 2, spread=0.8)
    folder = str(tmp_path / "int8_adapters")
    report = export_onnx_genai(
        task_a, folder, max_length=MAX_LENGTH, tokenizer=tokenizer,
        start_token_id=START, prompts=PROMPTS, max_new_tokens=NEW_TOKENS,
        quantize="int8", runtime_adapters=True)
    assert report.quantize == "int8" and report.quantized_matmuls == LINEAR_LAYERS
    graph = _graph(folder).graph
    inputs = {i.name: i.type.tensor_type.elem_type for i in graph.input}
    factors = [name for name in inputs if name.endswith(("/lora_a", "/lora_b"))]
    # query and value of both layers, A and B each, float32 inputs.
    assert len(factors) == 2 * 4 and {inputs[f] for f in factors} == {1}
    # What reads them stays float: x @ A is a MatMul (one per adapted layer,
    # beside attention's 4), B goes through tf2onnx's einsum rewrite.
    readers = [n for n in graph.node if set(n.input) & set(factors)]
    assert len(readers) == 8 and "MatMulNBits" not in {n.op_type for n in readers}
    assert sum(n.op_type == "MatMul" for n in graph.node) == 4 + 4
    # The export's check of task a's own adapter, teacher forced (measured
    # 63/64 next tokens, 63/64 free running).
    assert report.next_token_agreement >= 0.95

    adapter = str(tmp_path / "b.onnx_adapter")
    write_onnx_genai_adapter(task_b, folder, adapter)
    generator = GenAIGenerator(folder)
    generator.load_adapter(adapter, "b")
    prompt_ids = [[START] + [3 + i for i in range(5)], [START, 10, 11, 12]]
    reference = references(task_b, MAX_LENGTH)
    expected = [reference(p, NEW_TOKENS) for p in prompt_ids]
    measured = verify_generation(GenAITeacherForcing(generator, MAX_LENGTH),
                                 prompt_ids, NEW_TOKENS, expected, min_agreement=0.9)
    # Measured: 32/32 next tokens, both prompts whole.
    assert measured["next_tokens_matching"] >= 0.9 * measured["tokens_compared"]


# === What is refused ===

def test_agreement_below_min_agreement_writes_nothing(model, tokenizer, reference,
                                                      tmp_path):
    folder = str(tmp_path / "int4")
    with pytest.raises(GenerationVerificationError,
                       match=r"agrees with Keras' on \d+/64 steps .*below "
                             r"min_agreement=0\.95.*Nothing was written"):
        export_onnx_genai(model, folder, max_length=MAX_LENGTH,
                          tokenizer=tokenizer, start_token_id=START,
                          prompts=PROMPTS, max_new_tokens=NEW_TOKENS,
                          reference=reference, quantize="int4",
                          min_agreement=0.95)
    assert not os.path.exists(folder)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("options, error, message", [
    ({"quantize": "int2"}, ValueError,
     r"Unrecognized quantize='int2'.*\[None, 'int4', 'int8'\]"),
    ({"quantize": "dynamic"}, ValueError, r"Unrecognized quantize='dynamic'"),
    ({"quantize": "int4", "min_agreement": 1.5}, ValueError,
     r"`min_agreement` must be a number in \[0, 1\]"),
    ({"quantize": "int8", "min_agreement": True}, ValueError, "min_agreement"),
])
def test_bad_quantize_arguments_are_refused(model, tokenizer, tmp_path, options,
                                            error, message):
    folder = str(tmp_path / "out")
    with pytest.raises(error, match=message):
        export_onnx_genai(model, folder, tokenizer=tokenizer, **options)
    assert os.listdir(tmp_path) == []


def test_check_runtime_arguments_takes_the_genai_modes(tokenizer, tmp_path):
    folder = str(tmp_path / "genai")
    for mode in (None, "int8"):
        record = check_runtime_arguments(folder, "onnx_genai", quantize=mode,
                                         tokenizer=tokenizer)
        assert record.quantize_modes == (None, "int4", "int8")
    with pytest.raises(ValueError, match=r"supports quantize in \[None, 'int4', "
                                         r"'int8'\]. Received: quantize='dynamic'"):
        check_runtime_arguments(folder, "onnx_genai", quantize="dynamic",
                                tokenizer=tokenizer)
    assert os.listdir(tmp_path) == []


def test_klr_export_passes_quantize_through(model, tokenizer, tmp_path):
    import keras_lowrank as klr

    folder = str(tmp_path / "genai")
    report = klr.export(model, folder, "onnx_genai", quantize="int8",
                        tokenizer=tokenizer, verify=False)
    assert report.quantize == "int8" and not report.verified
    assert report.quantized_matmuls == LINEAR_LAYERS
    assert sum(n.op_type == "MatMulNBits"
               for n in _graph(folder).graph.node) == LINEAR_LAYERS
    assert "int8 weights (MatMulNBits x15)" in str(report)
