"""add_adapters on tiny keras-hub models and plain Keras models."""

import keras
import keras_hub
import numpy as np
import pytest

import keras_lowrank as klr
from keras_lowrank.surgery.layer_paths import layer_paths
from tests import tiny_models as tiny


def count(model):
    return klr.parameter_counts(model)


@pytest.fixture(scope="module")
def bert():
    """A tiny BERT classifier for the tests that only adapt it: add_adapters
    leaves its input as it was (test_input_model_is_untouched)."""
    return tiny.bert_classifier()


def test_bert_query_value_count_and_zero_init_outputs():
    model = tiny.bert_classifier()
    x = tiny.bert_inputs()
    adapted = klr.add_adapters(model, rank=4)
    assert isinstance(adapted, keras_hub.models.BertTextClassifier)
    # 2 layers x (query + value) x 4 x (16 + 16), plus the head 16*2 + 2.
    assert count(adapted)[0] == 2 * 2 * 4 * (16 + 16) + 34
    assert klr.adapter_paths(adapted) == [
        "transformer_layer_0/self_attention_layer/query",
        "transformer_layer_0/self_attention_layer/value",
        "transformer_layer_1/self_attention_layer/query",
        "transformer_layer_1/self_attention_layer/value",
    ]
    np.testing.assert_array_equal(adapted.predict(x, verbose=0), model.predict(x, verbose=0))


def test_input_model_is_untouched():
    model = tiny.bert_classifier()
    weights, flags = tiny.weights_of(model), tiny.flags_of(model)
    layers = dict(layer_paths(model))
    adapted = klr.add_adapters(model, targets="all-linear", rank=2)
    assert all(np.array_equal(a, b) for a, b in zip(tiny.weights_of(model), weights))
    assert tiny.flags_of(model) == flags
    assert all(layer_paths(model)[p] is layer for p, layer in layers.items())
    assert not set(map(id, layer_paths(adapted).values())) & set(map(id, layers.values()))
    assert type(model) is keras_hub.models.BertTextClassifier


def test_everything_else_is_frozen(bert):
    adapted = klr.add_adapters(bert, rank=2)
    trainable = {w.path for w in adapted.trainable_weights}
    assert trainable == {
        *(f"transformer_layer_{i}/self_attention_layer/{p}/lora_{ab}"
          for i in range(2) for p in ("query", "value") for ab in "ab"),
        "logits/kernel", "logits/bias",
    }


@pytest.mark.parametrize(
    "targets, expected",
    [
        ("transformer_layer_1/self_attention_layer/key", ["transformer_layer_1/self_attention_layer/key"]),
        (["key"], ["transformer_layer_0/self_attention_layer/key", "transformer_layer_1/self_attention_layer/key"]),
        ("*_1/*/attention_output", ["transformer_layer_1/self_attention_layer/attention_output"]),
        ("re:transformer_layer_0/feedforward_.*", ["transformer_layer_0/feedforward_intermediate_dense", "transformer_layer_0/feedforward_output_dense"]),
        (["token_embedding"], ["token_embedding"]),
    ],
)
def test_each_kind_of_pattern(targets, expected, bert):
    adapted = klr.add_adapters(bert, targets=targets, rank=2)
    assert klr.adapter_paths(adapted) == expected


def test_all_linear_skips_the_head(bert):
    adapted = klr.add_adapters(bert, targets="all-linear", rank=2)
    paths = klr.adapter_paths(adapted)
    assert len(paths) == 2 * 6 + 1  # 4 attention + 2 feed-forward per block, pooled_dense
    assert "logits" not in paths and "pooled_dense" in paths


def test_rank_and_alpha_patterns(bert):
    adapted = klr.add_adapters(
        bert, rank=4, alpha=8,
        rank_pattern={"*/value": 2}, alpha_pattern={"transformer_layer_1/*": 1.0},
    )
    found = {p: layer for p, layer in layer_paths(adapted).items() if p in klr.adapter_paths(adapted)}
    assert found["transformer_layer_0/self_attention_layer/value"].rank == 2
    assert found["transformer_layer_0/self_attention_layer/query"].rank == 4
    assert found["transformer_layer_1/self_attention_layer/query"].alpha == 1.0
    assert found["transformer_layer_0/self_attention_layer/query"].scale == 2.0


def test_no_match_lists_the_layers(bert):
    with pytest.raises(ValueError, match=r"No layer matched targets=\['q_proj'\].*transformer_layer_0/self_attention_layer/query \(EinsumDense\)"):
        klr.add_adapters(bert, targets=["q_proj"])


def test_unmatched_exclude_and_target_warn(bert):
    with pytest.warns(UserWarning, match=r"Exclude pattern 'nothing_here' matched no layer"):
        klr.add_adapters(bert, exclude=["nothing_here"], rank=2)
    with pytest.warns(UserWarning, match=r"Target pattern 'k_proj' matched no adaptable layer"):
        klr.add_adapters(bert, targets=["query", "k_proj"], rank=2)


def test_exclude_removes_layers(bert):
    adapted = klr.add_adapters(bert, exclude=["transformer_layer_0/*"], rank=2)
    assert klr.adapter_paths(adapted) == [
        "transformer_layer_1/self_attention_layer/query",
        "transformer_layer_1/self_attention_layer/value",
    ]


def test_rank_too_large_names_the_path(bert):
    with pytest.raises(ValueError, match=r"Layer 'transformer_layer_0/self_attention_layer/query': .*rank=32 is larger than min\(fan_in, fan_out\) = min\(16, 16\)"):
        klr.add_adapters(bert, rank=32)


def test_adapting_twice_is_refused(bert):
    adapted = klr.add_adapters(bert, rank=2)
    with pytest.raises(ValueError, match=r"already holds a LoRAEinsumDense"):
        klr.add_adapters(adapted, rank=2)


def test_keras_file_round_trip(tmp_path):
    adapted = klr.add_adapters(tiny.bert_classifier(), targets="all-linear", rank=2)
    for w in adapted.trainable_weights:
        w.assign(np.random.default_rng(0).normal(size=w.shape).astype("float32") * 0.1)
    x = tiny.bert_inputs()
    adapted.save(tmp_path / "adapted.keras")
    loaded = keras.models.load_model(tmp_path / "adapted.keras")
    assert isinstance(loaded, keras_hub.models.BertTextClassifier)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), adapted.predict(x, verbose=0))
    assert klr.adapter_paths(loaded) == klr.adapter_paths(adapted)
    assert count(loaded) == count(adapted)


def test_fit_trains_adapters_and_head_only():
    model = klr.add_adapters(tiny.bert_classifier(), rank=2)
    frozen = {w.path: w.numpy().copy() for w in model.non_trainable_weights}
    before = {w.path: w.numpy().copy() for w in model.trainable_weights}
    x, y = tiny.bert_inputs(batch=16), np.arange(16) % 2
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    losses = model.fit(x, y, epochs=6, batch_size=16, verbose=0).history["loss"]
    assert losses[-1] < losses[0]
    for w in model.non_trainable_weights:
        np.testing.assert_array_equal(w.numpy(), frozen[w.path])
    assert all(np.abs(w.numpy() - before[w.path]).max() > 0 for w in model.trainable_weights)


@pytest.mark.parametrize("build", [tiny.gpt2_causal_lm, tiny.llama_causal_lm])
def test_causal_lm_generate_after_adapters(build):
    lm = build()
    adapted = klr.add_adapters(lm, targets="all-linear", rank=2)
    assert type(adapted).__mro__[1] is type(lm) or type(adapted) is type(lm)
    x = tiny.lm_inputs()
    lm.compile(sampler="greedy")
    adapted.compile(sampler="greedy")
    want = lm.generate(x, max_length=tiny.SEQ, stop_token_ids=None)
    got = adapted.generate(x, max_length=tiny.SEQ, stop_token_ids=None)
    np.testing.assert_array_equal(got["token_ids"], want["token_ids"])
    assert len(klr.adapter_paths(adapted)) >= 2 * 4


def test_functional_model_with_nested_attention(tmp_path):
    model = tiny.functional_with_attention()
    x = np.random.default_rng(0).normal(size=(2, 5, 16)).astype("float32")
    adapted = klr.add_adapters(model, targets=["embed", "*/query", "attention/value", "head"], rank=2)
    assert klr.adapter_paths(adapted) == ["embed", "attention/query", "attention/value", "head"]
    assert isinstance(adapted, keras.Model)
    # A Functional model has no head by default: every weight but the factors is frozen.
    assert count(adapted)[0] == 3 * 2 * (16 + 16) + 2 * (16 + 3)  # embed, query, value; head
    for w in adapted.trainable_weights:
        w.assign(np.full(w.shape, 0.05, "float32"))
    adapted.save(tmp_path / "f.keras")
    loaded = keras.models.load_model(tmp_path / "f.keras")
    np.testing.assert_array_equal(loaded(x), adapted(x))
    assert np.abs(keras.ops.convert_to_numpy(adapted(x) - model(x))).max() > 1e-3


def test_sequential_model(tmp_path):
    model = tiny.sequential_mlp()
    x = np.random.default_rng(0).normal(size=(3, 8)).astype("float32")
    adapted = klr.add_adapters(model, targets="all-linear", rank=2, trainable=["out"])
    assert klr.adapter_paths(adapted) == ["hidden"]
    assert count(adapted)[0] == 2 * (8 + 16) + 16 * 4 + 4
    np.testing.assert_array_equal(adapted(x), model(x))
    adapted.save(tmp_path / "s.keras")
    np.testing.assert_array_equal(keras.models.load_model(tmp_path / "s.keras")(x), adapted(x))


def test_trainable_summary_format():
    text = klr.trainable_summary(klr.add_adapters(tiny.sequential_mlp(), targets="hidden", rank=2))
    # 8*16 + 16 + 16*4 + 4 = 212 base parameters, 2 * (8 + 16) = 48 in the adapter.
    assert text == "trainable params: 48 || all params: 260 || trainable%: 18.4615"


@pytest.mark.parametrize("build", [tiny.gpt2_causal_lm, tiny.llama_causal_lm])
def test_causal_lm_keeps_its_tied_embedding_frozen(build):
    lm = build()
    adapted = klr.add_adapters(lm, rank=2)
    # The default head of a causal LM is empty: its output projection is the
    # backbone's token embedding, which stays frozen.
    assert {w.path.rsplit("/", 1)[-1] for w in adapted.trainable_weights} == {"lora_a", "lora_b"}
    trainable = count(adapted)[0]
    assert trainable == sum(int(np.prod(w.shape)) for w in adapted.trainable_weights)
    assert trainable == 2 * 2 * 2 * (16 + 16) or build is tiny.llama_causal_lm
    tied = klr.add_adapters(lm, targets=["token_embedding"], rank=2)
    assert klr.adapter_paths(tied) == ["token_embedding"]
    assert count(tied)[0] == 2 * (tiny.VOCAB + 16)


def test_container_weights_are_frozen_and_stay_frozen(tmp_path):
    vit = keras_hub.models.ViTBackbone(
        image_shape=(8, 8, 3), patch_size=4, num_layers=1, num_heads=2,
        hidden_dim=8, mlp_dim=16,
    )
    adapted = klr.add_adapters(vit, rank=2)
    names = {w.path.rsplit("/", 1)[-1] for w in adapted.trainable_weights}
    assert names == {"lora_a", "lora_b"}
    assert any(w.path.endswith("class_token") for w in vit.trainable_weights)
    adapted.save(tmp_path / "vit.keras")
    loaded = keras.models.load_model(tmp_path / "vit.keras")
    assert {w.path.rsplit("/", 1)[-1] for w in loaded.trainable_weights} == names
    merged_back = klr.merge_adapters(adapted)
    assert any(w.path.endswith("class_token") for w in merged_back.trainable_weights)


def test_targeting_the_head_says_it_is_kept_trainable(bert):
    with pytest.raises(ValueError, match=r"targets=\['logits'\] matched only layers kept fully "
                                         r"trainable: \['logits'\] \(trainable=\['logits'\].*pass `trainable=\(\)`"):
        klr.add_adapters(bert, targets=["logits"], rank=2)
    adapted = klr.add_adapters(bert, targets=["logits"], trainable=(), rank=2)
    assert klr.adapter_paths(adapted) == ["logits"]


def test_every_match_excluded(bert):
    with pytest.raises(ValueError, match=r"Every layer that targets=\['query'\] matched is excluded "
                                         r"by exclude=\['\*/query'\]"):
        klr.add_adapters(bert, targets=["query"], exclude=["*/query"], rank=2)


def test_functional_model_survives_save_load_merge_save(tmp_path):
    model = klr.add_adapters(tiny.functional_with_attention(), rank=2, targets="all-linear")
    rng = np.random.default_rng(0)
    for weight in model.trainable_weights:
        weight.assign(rng.normal(0.0, 0.1, weight.shape).astype("float32"))
    x = np.random.default_rng(1).normal(size=(4, 5, 16)).astype("float32")
    want = model.predict(x, verbose=0)
    model.save(tmp_path / "adapted.keras")
    loaded = keras.models.load_model(tmp_path / "adapted.keras", compile=False)
    merged = klr.merge_adapters(loaded)  # a second rewrite of a loaded model
    merged.save(tmp_path / "merged.keras")
    again = keras.models.load_model(tmp_path / "merged.keras", compile=False)
    assert np.abs(again.predict(x, verbose=0) - want).max() < 1e-5
