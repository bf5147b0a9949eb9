"""`add_adapters(..., base_quantization=...)` on tiny models: forward,
training, merge, files, PEFT, export, weight bytes and refusals."""

import keras
import keras_hub
import numpy as np
import peft
import pytest

import keras_lowrank as klr
from keras_lowrank._compat import keras as klr_compat
from keras_lowrank.surgery.layer_paths import layer_paths
from tests import tiny_models

@pytest.fixture(scope="module")
def bert():
    keras.utils.set_random_seed(0)  # module fixtures come before the per-test seed
    backbone = keras_hub.models.BertBackbone(  # tiny_models.bert_classifier, 1 block
        vocabulary_size=tiny_models.VOCAB, num_layers=1, num_heads=2, hidden_dim=16,
        intermediate_dim=32, max_sequence_length=tiny_models.SEQ,
    )
    model = keras_hub.models.BertTextClassifier(
        backbone=backbone, num_classes=2, preprocessor=None)
    inputs = tiny_models.bert_inputs()
    return model, inputs, np.array(model(inputs))


def _quantized_layers(model):
    return sorted(p for p, layer in layer_paths(model).items()
                  if getattr(layer, "quantization_mode", None)
                  or getattr(getattr(layer, "layer", None), "quantization_mode", None))


def _factors(model):
    return {w.path: w.numpy().copy() for w in model.trainable_weights if "lora_" in w.path}


@pytest.fixture(scope="module")
def functional():
    keras.utils.set_random_seed(0)  # module fixtures come before the per-test seed
    model = tiny_models.functional_with_attention()  # Dense, attention, Dense
    inputs = np.random.default_rng(0).normal(size=(4, 5, 16)).astype("float32")
    return model, inputs, np.array(model(inputs))


@pytest.mark.parametrize("mode,frozen,bound", [
    # measured at seed 0: int8 0.0044, int4 0.176 (4-bit: 15 steps a column)
    ("int8", "adapted", 0.01), ("int4", "adapted", 0.25), ("int8", "all", 0.02),
])  # int4 with "all": test_fit_moves_only_the_factors_and_keras_file_round_trips
def test_forward_trainable_counts_and_merge(functional, mode, frozen, bound):
    model, inputs, reference = functional
    weights, flags = tiny_models.weights_of(model), tiny_models.flags_of(model)
    adapted = klr.add_adapters(model, rank=4, base_quantization=mode, quantize_frozen=frozen)
    # The user's model is untouched.
    assert all(np.array_equal(a, b) for a, b in zip(weights, tiny_models.weights_of(model)))
    assert flags == tiny_models.flags_of(model) and _quantized_layers(model) == []
    # B = 0: the quantized base alone, within `bound` of the float model
    # (outputs about 1 in size).
    assert np.abs(np.array(adapted(inputs)) - reference).max() < bound
    # Trainable: A (16, 4) and B (4, 2 heads x 8) of query and value.
    assert klr.parameter_counts(adapted)[0] == 2 * (16 * 4 + 4 * 16) == 256
    expected = ["attention/query", "attention/value"]
    if frozen == "all":
        expected += ["attention/attention_output", "attention/key", "embed", "head"]
    assert _quantized_layers(adapted) == sorted(expected)
    tiny_models.random_factors(adapted, seed=3, factors=("lora_a", "lora_b"))
    outputs = np.array(adapted(inputs))
    merged = klr.merge_adapters(adapted)
    assert type(merged) is type(model) and _quantized_layers(merged) == []
    assert all(w.dtype == "float32" for w in merged.weights)
    assert np.abs(np.array(merged(inputs)) - outputs).max() < 1e-5


def test_fit_moves_only_the_factors_and_keras_file_round_trips(functional, tmp_path):
    model, inputs, reference = functional
    adapted = klr.add_adapters(model, rank=4, base_quantization="int4", quantize_frozen="all")
    assert np.abs(np.array(adapted(inputs)) - reference).max() < 0.2
    frozen = {w.path: w.numpy().copy() for w in adapted.non_trainable_weights}
    factors = _factors(adapted)
    adapted.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse", jit_compile=False)
    adapted.fit(inputs, np.ones((4, 3), "float32"), epochs=3, verbose=0)
    after = {w.path: w for w in adapted.non_trainable_weights}
    assert sorted(after) == sorted(frozen)
    assert all(np.array_equal(frozen[p], after[p].numpy()) for p in frozen)  # bit for bit
    assert sum(str(w.dtype) == "int8" for w in after.values()) == 12  # kernels, zeros
    moved = _factors(adapted)
    assert all(not np.array_equal(factors[p], moved[p]) for p in factors)

    outputs = np.array(adapted(inputs))
    adapted.save(tmp_path / "adapted.keras")
    loaded = keras.models.load_model(tmp_path / "adapted.keras")
    np.testing.assert_array_equal(np.array(loaded(inputs)), outputs)
    assert _quantized_layers(loaded) == _quantized_layers(adapted)


def test_a_keras_hub_task_with_all_frozen_layers_quantized(bert, tmp_path):
    model, inputs, reference = bert
    adapted = klr.add_adapters(model, rank=4, base_quantization="int4", quantize_frozen="all")
    # B = 0: logits of the tiny classifier are about 0.1 in size.
    assert np.abs(np.array(adapted(inputs)) - reference).max() < 1e-2
    # A and B of query and value (16 -> 2 heads x 8, rank 4): 256; the head
    # Dense(16 -> 2) stays trainable and float: 34.
    assert klr.parameter_counts(adapted)[0] == 2 * (16 * 4 + 4 * 16) + 16 * 2 + 2
    quantized = _quantized_layers(adapted)
    # q, k, v, output, 2 feedforward, the pooler, the segment table, the
    # tied token table (Keras' ReversibleEmbedding); not the trainable head.
    assert len(quantized) == 9 and "pooled_dense" in quantized
    assert "token_embedding" in quantized and "logits" not in quantized
    # A classifier's table is a lookup only, held as asked (not the int8 of
    # a causal LM's output head).
    assert adapted.backbone.token_embedding.quantization_mode == "int4"
    tiny_models.random_factors(adapted, seed=3, factors=("lora_a", "lora_b"))
    outputs = np.array(adapted(inputs))
    adapted.save(tmp_path / "adapted.keras")
    loaded = keras.models.load_model(tmp_path / "adapted.keras")
    np.testing.assert_array_equal(np.array(loaded(inputs)), outputs)
    merged = klr.merge_adapters(adapted)
    assert type(merged) is type(model) and _quantized_layers(merged) == []
    assert np.abs(np.array(merged(inputs)) - outputs).max() < 1e-5


@pytest.mark.parametrize("mode,bound", [("int8", 0.003), ("int4", 0.01)])
def test_a_tied_token_table_is_quantized_with_the_frozen_layers(mode, bound):
    """A decoder LM whose output head is its token table (SmolLM2's tied
    ReversibleEmbedding): `quantize_frozen="all"` holds the table quantized
    too (int8 under an int4 base: the output head, as QLoRA keeps it in 16
    bits), Keras' quantized call projects the logits, and merge gives it
    back in float."""
    keras.utils.set_random_seed(0)
    config = {**tiny_models.llama_causal_lm().backbone.get_config(), "tie_word_embeddings": True}
    model = keras_hub.models.LlamaCausalLM(
        backbone=keras_hub.models.LlamaBackbone.from_config(config), preprocessor=None)
    inputs = tiny_models.lm_inputs()
    reference = np.array(model(inputs))
    adapted = klr.add_adapters(model, rank=4, targets="all-linear",
                               base_quantization=mode, quantize_frozen="all")
    table = adapted.backbone.token_embedding
    assert table.quantization_mode == "int8" and table.tie_weights
    query = layer_paths(adapted)["transformer_layer_0/self_attention/query"]
    assert query.layer.quantization_mode == mode  # the linear layers: as asked
    assert model.backbone.token_embedding.quantization_mode is None  # the user's model
    # B = 0: logits of the tiny LM are about 0.1 in size; measured at seed 0:
    # int8 0.0012, int4 0.0065 (0.015 with the table in int4 too).
    assert np.abs(np.array(adapted(inputs)) - reference).max() < bound
    # The 64 x 16 table: 1 byte a value instead of 4, and a float32 scale a row.
    table_bytes = sum(np.prod(w.shape) * np.dtype(w.dtype).itemsize for w in table.weights)
    assert table_bytes == 64 * 16 + 64 * 4
    tiny_models.random_factors(adapted, seed=3, factors=("lora_a", "lora_b"))
    outputs = np.array(adapted(inputs))
    merged = klr.merge_adapters(adapted)
    assert _quantized_layers(merged) == [] and merged.backbone.token_embedding.tie_weights
    assert all(w.dtype == "float32" for w in merged.weights)
    assert np.abs(np.array(merged(inputs)) - outputs).max() < 1e-5


def test_int4_groups_hold_64_input_values():
    """An int4 kernel is held in groups of 64 input values (QLoRA's NF4
    block), each with a float32 scale and an int8 zero point an output."""
    from keras_lowrank.layers.quantized_base import quantize_layer

    dense = keras.layers.Dense(3)
    dense.build((None, 130))
    float_kernel = np.array(dense.kernel)
    quantize_layer(dense, "int4")
    shapes = {w.name: (tuple(w.shape), str(w.dtype)) for w in dense.weights}
    assert shapes["kernel"] == ((130, 2), "int8")  # 3 outputs packed two a byte
    assert shapes["kernel_scale"] == ((3, 3), "float32")  # ceil(130 / 64) groups
    assert shapes["kernel_zero"] == ((3, 3), "int8")
    error = np.abs(np.array(klr_compat.dequantized_kernel(dense)) - float_kernel)
    # Half of one of 15 steps over a group's range (Glorot-uniform values
    # within 0.212 here): measured 0.0139.
    assert error.max() <= 0.424 / 15 / 2


def test_adapter_and_peft_files_of_a_quantized_base_load_on_the_float_base(bert, tmp_path):
    model, inputs, _ = bert
    adapted = klr.add_adapters(model, rank=4, alpha=8, base_quantization="int8")
    tiny_models.random_factors(adapted, seed=4)
    klr.save_adapters(adapted, tmp_path / "a.safetensors")
    config = klr.read_adapter_metadata(tmp_path / "a.safetensors")["config"]
    assert config["base_quantization"] == "int8"
    loaded = klr.load_adapters(model, tmp_path / "a.safetensors")  # the QLoRA workflow
    assert _quantized_layers(loaded) == []
    saved, read = _factors(adapted), _factors(loaded)
    assert sorted(saved) == sorted(read) and len(saved) == 4
    assert all(np.array_equal(saved[p], read[p]) for p in saved)  # exact
    # The float base differs from the int8 one by the quantization error only.
    diff = np.abs(np.array(loaded(inputs)) - np.array(adapted(inputs))).max()
    assert 0 < diff < 1e-4

    klr.save_peft_adapters(adapted, tmp_path / "peft")
    config = peft.PeftConfig.from_pretrained(str(tmp_path / "peft"))  # the real PEFT
    assert (config.peft_type, config.r, config.lora_alpha) == ("LORA", 4, 8)
    assert set(config.target_modules) == {"query", "value"}
    again = klr.load_peft_adapters(model, tmp_path / "peft")
    saved = [w.numpy() for w in adapted.trainable_weights if "lora_" in w.path]
    read = [w.numpy() for w in again.trainable_weights if "lora_" in w.path]
    assert len(saved) == len(read) == 4
    assert max(np.abs(a - b).max() for a, b in zip(saved, read)) < 1e-7


def test_weight_bytes_are_counted_per_dtype():
    model = tiny_models.sequential_mlp()  # Dense 8 -> 16, Dense 16 -> 4
    # float32: (8·16 + 16 + 16·4 + 4) values x 4 bytes.
    assert klr.weight_bytes(model) == (128 + 16 + 64 + 4) * 4 == 848
    lora = (8 * 2 + 2 * 16 + 16 * 2 + 2 * 4) * 4  # A, B of both at rank 2: 352
    int8 = klr.add_adapters(model, rank=2, targets=("hidden", "out"), base_quantization="int8")
    # int8 kernels (1 byte) + float32 per-column scales + float32 biases.
    assert klr.weight_bytes(int8) == (128 + 16 * 4 + 16 * 4) + (64 + 4 * 4 + 4 * 4) + lora == 704
    int4 = klr.add_adapters(model, rank=2, targets=("hidden", "out"), base_quantization="int4")
    # int4 packed in int8 (half a byte each) + one 128-row group: float32
    # scale and int8 zero per column, float32 group index per row, + biases.
    hidden = 8 * 8 + 16 * 4 + 16 + 8 * 4 + 16 * 4
    out = 16 * 2 + 4 * 4 + 4 + 16 * 4 + 4 * 4
    assert klr.weight_bytes(int4) == hidden + out + lora == 724
    assert klr.weight_bytes(klr.merge_adapters(int4)) == 848


def test_dora_and_pissa_work_on_a_quantized_base(functional):
    model, inputs, reference = functional
    for fields in ({"use_dora": True}, {"init": "pissa"}):
        adapted = klr.add_adapters(model, rank=4, base_quantization="int4", **fields)
        # int4's own error (0.176 in test_forward_trainable_counts_and_merge)
        assert np.abs(np.array(adapted(inputs)) - reference).max() < 0.25
        tiny_models.random_factors(adapted, seed=6)
        outputs = np.array(adapted(inputs))
        merged = klr.merge_adapters(adapted)
        assert _quantized_layers(merged) == []
        assert np.abs(np.array(merged(inputs)) - outputs).max() < 1e-5


def test_export_of_a_quantized_adapted_model(tmp_path):
    model = tiny_models.sequential_mlp()
    adapted = klr.add_adapters(model, rank=2, targets=("hidden", "out"),
                               base_quantization="int4", quantize_frozen="all")
    tiny_models.random_factors(adapted, seed=7)
    x = np.random.default_rng(0).normal(size=(8, 8)).astype("float32")
    report = klr.export(adapted, tmp_path / "mlp.tflite", "tflite", sample_inputs=x)
    assert report.max_abs_diff < 1e-5
    merged = klr.merge_adapters(adapted)
    report = klr.export(merged, tmp_path / "merged.onnx", "onnx", sample_inputs=x)
    assert report.max_abs_diff < 1e-5


@pytest.mark.parametrize("fields,message", [
    ({"base_quantization": "int2"}, r"Received: base_quantization='int2'. Supported: "
     r"\[None, 'int8', 'int4'\]"),
    ({"base_quantization": "float8"}, r"Received: base_quantization='float8'"),
    ({"quantize_frozen": "some", "base_quantization": "int8"},
     r"Received: quantize_frozen='some'. Supported: \['adapted', 'all'\]"),
    ({"quantize_frozen": "all"}, r"quantize_frozen='all' without a `base_quantization`"),
    ({"targets": ("token_embedding",), "base_quantization": "int4"},
     r"Layer 'token_embedding': .* class ReversibleEmbedding"),
])
def test_refusals_change_nothing(bert, fields, message):
    model, _, _ = bert  # a keras-hub task: its token table is tied
    weights = tiny_models.weights_of(model)
    with pytest.raises(ValueError, match=message):
        klr.add_adapters(model, rank=2, **fields)
    assert all(np.array_equal(a, b) for a, b in zip(weights, tiny_models.weights_of(model)))
    assert _quantized_layers(model) == []


def test_a_second_adapter_shares_the_quantized_base(functional):
    model, inputs, _ = functional
    adapted = klr.add_adapters(model, rank=4, base_quantization="int8")
    with pytest.raises(ValueError, match="holds adapters already"):
        klr.add_adapters(adapted, adapter_name="second", base_quantization="int8")
    both = klr.add_adapters(adapted, adapter_name="second", rank=2)
    assert _quantized_layers(both) == _quantized_layers(adapted)
    tiny_models.random_factors(both, seed=8)
    outputs = np.array(both(inputs))
    merged = klr.merge_adapters(both)
    assert np.abs(np.array(merged(inputs)) - outputs).max() < 1e-5
