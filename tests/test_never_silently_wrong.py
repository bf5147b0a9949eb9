"""Issue 12: inputs that used to give a wrong result, or an unclear error.

Each case asserts the message and that nothing changed: the input model's
weights and flags, and the files on disk.
"""

import json
import os
import re
import struct
import warnings

import keras
import numpy as np
import pytest

import keras_lowrank as klr
from keras_lowrank.surgery.layer_paths import layer_paths
from tests import tiny_models as tiny


def _towers():
    """Two nested models that each hold a layer named `proj`."""

    def tower(name):
        inputs = keras.Input((6,))
        return keras.Model(inputs, keras.layers.Dense(4, name="proj")(inputs), name=name)

    inputs = keras.Input((6,))
    a, b = tower("tower_a"), tower("tower_b")
    outputs = keras.layers.Concatenate()([a(inputs), b(inputs)])
    return keras.Model(inputs, outputs, name="towers")


def _randomized(model, seed=3):
    rng = np.random.default_rng(seed)
    for w in model.trainable_weights:
        w.assign(rng.normal(size=w.shape).astype("float32") * 0.2)
    return model


# === Non-finite values ===


@pytest.mark.parametrize("alpha", [float("inf"), float("-inf"), float("nan")])
def test_non_finite_alpha_is_refused(alpha):
    with pytest.raises(ValueError, match=r"LoRAConfig expected .*`alpha`.* Received: alpha="):
        klr.LoRAConfig(alpha=alpha)
    dense = keras.layers.Dense(4, name="proj")
    dense.build((None, 8))
    with pytest.raises(ValueError, match=r"LoRADense\(layer='proj'\) expected .*`alpha`"):
        klr.LoRADense(dense, alpha=alpha)
    with pytest.raises(ValueError, match=r"alpha_pattern\['proj'\]"):
        klr.LoRAConfig(alpha_pattern={"proj": float("inf")})


def test_infinite_alpha_message_says_why():
    with pytest.raises(ValueError, match=r"expected a finite `alpha`: an infinite scale makes "
                                         r"every output NaN or Inf. Received: alpha=inf"):
        klr.LoRAConfig(alpha=float("inf"))


def test_nan_in_a_base_weight_stops_add_adapters_by_name():
    model = tiny.sequential_mlp()
    model.get_layer("hidden").kernel.assign(
        np.full((8, 16), np.nan, "float32"))
    before = tiny.weights_of(model)
    with pytest.raises(ValueError, match=r"add_adapters: weight 'mlp/hidden/kernel'|"
                                         r"add_adapters: weight 'hidden/kernel'"):
        klr.add_adapters(model, targets=["hidden"], rank=2)
    for a, b in zip(before, tiny.weights_of(model)):
        np.testing.assert_array_equal(a, b)


def test_nan_factor_is_not_saved_and_not_merged(tmp_path):
    model = klr.add_adapters(tiny.sequential_mlp(), targets=["hidden"], rank=2)
    adapter = layer_paths(model)["hidden"]
    b = np.zeros(adapter.lora_b.shape, "float32")
    b[0, 0] = np.inf
    adapter.lora_b.assign(b)
    path = tmp_path / "a.safetensors"
    with pytest.raises(ValueError, match=r"tensor 'hidden/lora_b' holds 1 NaN or Inf value\(s\) "
                                         r"of 32. Nothing was written"):
        klr.save_adapters(model, path)
    assert not path.exists() and os.listdir(tmp_path) == []
    with pytest.raises(ValueError, match=r"merge_adapters: weight '.*hidden/lora_b' .* holds 1 NaN"):
        klr.merge_adapters(model)


def _rewrite(path, out, change):
    """Copies a safetensors file with its header edited by `change(header)`."""
    raw = path.read_bytes()
    (size,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + size])
    body = raw[8 + size :]
    body = change(header, body) or body
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    out.write_bytes(struct.pack("<Q", len(text)) + text + body)
    return out


@pytest.fixture
def saved(tmp_path):
    base = tiny.sequential_mlp()
    model = _randomized(klr.add_adapters(base, targets=["hidden"], rank=2))
    path = tmp_path / "a.safetensors"
    klr.save_adapters(model, path)
    return base, path


def test_nan_in_an_adapter_file_is_refused_on_load(saved, tmp_path):
    base, path = saved
    before = tiny.weights_of(base)

    def poison(header, body):
        start, _ = header["hidden/lora_a"]["data_offsets"]
        body = bytearray(body)
        body[start : start + 4] = struct.pack("<f", float("nan"))
        return bytes(body)

    bad = _rewrite(path, tmp_path / "nan.safetensors", poison)
    with pytest.raises(ValueError, match=r"adapter file '.*nan.safetensors': tensor "
                                         r"'hidden/lora_a' holds 1 NaN or Inf value\(s\) of 16. "
                                         r"Nothing was loaded"):
        klr.load_adapters(base, bad)
    for a, b in zip(before, tiny.weights_of(base)):
        np.testing.assert_array_equal(a, b)


def _edit_metadata(edit):
    def change(header, body):
        meta = header["__metadata__"]
        meta["keras_lowrank"] = edit(meta["keras_lowrank"])

    return change


@pytest.mark.parametrize(
    "change, message",
    [
        (_edit_metadata(lambda m: json.dumps({**json.loads(m), "adapters": None})),
         r"'.*': its metadata has no 'adapters' table \(received NoneType\)"),
        (_edit_metadata(lambda m: m.replace('"rank": 2', '"rank": "2"')),
         r"'.*', adapter 'hidden': AdapterSpec expected `rank` to be a positive integer. "
         r"Received: rank='2'"),
        (_edit_metadata(lambda m: m[:-5]),
         r"its 'keras_lowrank' metadata is not valid JSON"),
        (_edit_metadata(lambda m: m.replace('"kind": "LoRADense", ', '')),
         r"the metadata of adapter 'hidden' has no 'kind'"),
    ],
    ids=["no-adapters", "rank-string", "not-json", "no-kind"],
)
def test_malformed_adapter_files_name_the_file(saved, tmp_path, change, message):
    base, path = saved
    bad = _rewrite(path, tmp_path / "bad.safetensors", change)
    before = tiny.weights_of(base)
    with pytest.raises(ValueError, match=message) as info:
        klr.load_adapters(base, bad)
    assert "bad.safetensors" in str(info.value)
    for a, b in zip(before, tiny.weights_of(base)):
        np.testing.assert_array_equal(a, b)


def test_missing_tensor_names_the_file_and_the_key(saved, tmp_path):
    from safetensors import safe_open
    from safetensors.numpy import load_file
    from safetensors.numpy import save_file

    base, path = saved
    with safe_open(str(path), framework="numpy") as handle:
        metadata = handle.metadata()
    tensors = load_file(path)
    del tensors["hidden/lora_b"]
    bad = tmp_path / "bad.safetensors"
    save_file(tensors, bad, metadata=metadata)
    with pytest.raises(ValueError, match=r"The adapter file '.*bad.safetensors' lacks tensor "
                                         r"'hidden/lora_b' of the adapter on layer 'hidden'"):
        klr.load_adapters(base, bad)


def test_merge_overflow_in_float16_names_the_layer():
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(4, name="proj", dtype="float16")], name="m")
    model.get_layer("proj").kernel.assign(np.full((4, 4), 60000, "float16"))
    adapted = klr.add_adapters(model, targets=["proj"], rank=2)
    adapter = layer_paths(adapted)["proj"]
    adapter.lora_a.assign(np.ones(adapter.lora_a.shape, "float32"))
    adapter.lora_b.assign(np.full(adapter.lora_b.shape, 5000, "float32"))
    with pytest.raises(FloatingPointError, match=r"Layer 'proj': Merging layer 'proj' gives 16 "
                                                 r"non-finite value\(s\) in its float16 kernel"):
        klr.merge_adapters(adapted)


# === Dropped behaviour ===


class TimesTenDense(keras.layers.Dense):
    def call(self, inputs):
        return super().call(inputs) * 10.0 + 5.0


def test_subclass_overriding_call_is_refused_by_name():
    inputs = keras.Input((6,))
    outputs = TimesTenDense(4, name="scaled")(inputs)
    model = keras.Model(inputs, outputs)
    with pytest.raises(ValueError, match=r"Layer 'scaled': LoRADense cannot adapt layer 'scaled' "
                                         r"of class TimesTenDense: it overrides `call\(\)` of "
                                         r"keras.layers.Dense"):
        klr.add_adapters(model, targets=["scaled"], rank=2)
    layer = model.get_layer("scaled")
    with pytest.raises(ValueError, match=r"TimesTenDense"):
        klr.LoRADense(layer, rank=2)
    assert layer.trainable


# === Paths ===


def test_nested_models_with_one_layer_name_get_distinct_paths(tmp_path):
    model = _towers()
    paths = layer_paths(model)
    assert {"tower_a/proj", "tower_b/proj"} <= set(paths)
    assert "proj" not in paths
    adapted = klr.add_adapters(model, targets=["proj"], rank=2)
    assert klr.adapter_paths(adapted) == ["tower_a/proj", "tower_b/proj"]
    _randomized(adapted)
    file = tmp_path / "a.safetensors"
    klr.save_adapters(adapted, file)
    loaded = klr.load_adapters(_towers_like(model), file)
    x = np.random.default_rng(0).normal(size=(3, 6)).astype("float32")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), adapted.predict(x, verbose=0))
    only_b = klr.add_adapters(model, targets=["tower_b/proj"], rank=2)
    assert klr.adapter_paths(only_b) == ["tower_b/proj"]


def _towers_like(model):
    fresh = _towers()
    fresh.set_weights(model.get_weights())
    return fresh


def test_sibling_layers_with_one_name_are_an_error():
    class Pair(keras.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.first = keras.layers.Dense(3, name="twin")
            self.second = keras.layers.Dense(3, name="twin")

        def call(self, x):
            return self.first(x) + self.second(x)

    inputs = keras.Input((4,))
    model = keras.Model(inputs, Pair(name="pair")(inputs), name="pairs")
    with pytest.raises(ValueError, match=r"Model 'pairs' has two layers at path 'pair/twin' "
                                         r"\(a Dense and a Dense\).*Give them distinct names"):
        klr.add_adapters(model, targets=["twin"], rank=2)


# === Typos in pattern fields ===


def test_trainable_typo_is_an_error():
    model = tiny.bert_classifier()
    with pytest.raises(ValueError, match=r"trainable pattern 'logit' matched no layer of the "
                                         r"model, so it would silently change nothing"):
        klr.add_adapters(model, trainable=["logit"])
    assert klr.adapter_paths(klr.add_adapters(model, trainable=["logits"]))


@pytest.mark.parametrize("field, value", [("rank_pattern", {"*/quer": 4}),
                                          ("alpha_pattern", {"*/quer": 4.0})])
def test_rank_and_alpha_pattern_typos_are_errors(field, value):
    model = tiny.bert_classifier()
    with pytest.raises(ValueError, match=rf"{field} pattern '\*/quer' matched no layer"):
        klr.add_adapters(model, **{field: value})


def test_pattern_matching_only_unadapted_layers_warns():
    model = tiny.bert_classifier()
    with pytest.warns(UserWarning, match=r"rank_pattern pattern 'key' matched only layers that "
                                         r"get no adapter: \['transformer_layer_0/self_attention_layer/key'"):
        adapted = klr.add_adapters(model, rank_pattern={"key": 4})
    assert {layer.rank for layer in layer_paths(adapted).values()
            if isinstance(layer, klr.layers.LoRAAdapter)} == {8}


def test_matching_patterns_do_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        adapted = klr.add_adapters(tiny.bert_classifier(), rank_pattern={"*/query": 4},
                                   trainable=["logits"])
    query = layer_paths(adapted)["transformer_layer_0/self_attention_layer/query"]
    assert query.rank == 4


# === Clear errors for wrong arguments ===


@pytest.mark.parametrize(
    "thing, shown",
    [
        (keras.layers.Dense(3, name="lonely"), r"Dense 'lonely'"),
        ({"a": 1}, r"dict \{'a': 1\}"),
        (None, r"NoneType None"),
        ("model.keras", r"str 'model.keras'"),
    ],
)
@pytest.mark.parametrize("function", ["add_adapters", "merge_adapters"])
def test_non_models_are_refused(function, thing, shown):
    with pytest.raises(TypeError, match=rf"{function} expected a keras.Model .* Received: {shown}"):
        getattr(klr, function)(thing)


def test_unbuilt_model_is_refused():
    model = keras.Sequential([keras.layers.Dense(3, name="d")], name="lazy")
    with pytest.raises(ValueError, match=r"add_adapters: model 'lazy' is not built"):
        klr.add_adapters(model, targets=["d"])


def test_keras_enable_lora_model_gets_the_dedicated_message():
    model = tiny.sequential_mlp()
    model.get_layer("out").enable_lora(2)
    with pytest.raises(ValueError, match=r"add_adapters: layer 'out' of model 'mlp' has Keras' "
                                         r"own LoRA enabled"):
        klr.add_adapters(model, targets=["hidden"])


def test_config_of_the_wrong_type():
    with pytest.raises(TypeError, match=r"expected `config` to be a klr.LoRAConfig .* "
                                        r"Received: config=8"):
        klr.add_adapters(tiny.sequential_mlp(), 8)


@pytest.mark.parametrize("path", ["", 123, None])
def test_bad_adapter_paths(path, tmp_path):
    model = _randomized(klr.add_adapters(tiny.sequential_mlp(), targets=["hidden"], rank=2))
    with pytest.raises(ValueError, match=rf"save_adapters expected the path of a .safetensors "
                                         rf"file. Received: path={path!r}"):
        klr.save_adapters(model, path)
    with pytest.raises(ValueError, match=r"load_adapters expected the path"):
        klr.load_adapters(tiny.sequential_mlp(), path)


# === Issue 26: never silently wrong, round two ===


def test_alpha_whose_scale_overflows_float32_is_refused():
    # Finite, but s = 1e39 / 2 is Inf in float32: outputs go Inf once B != 0.
    with pytest.raises(ValueError, match=re.escape(
            "LoRAConfig: `alpha` with rank=2 gives the scale s = alpha / rank = "
            "5e+38, beyond the largest float32 value (3.403e+38), the dtype "
            "keras_lowrank computes s·A·B in: s·A·B would be Inf, and every "
            "output NaN or Inf once B is non-zero. Received: alpha=1e+39. Use "
            "an alpha of at most 6.806e+38 for rank 2.")):
        klr.LoRAConfig(rank=2, alpha=1e39)
    # A pattern's alpha meets the smallest rank of any pattern.
    with pytest.raises(ValueError, match=r"LoRAConfig: `alpha_pattern\['proj'\]` with rank=1 "
                                         r".* Received: alpha_pattern\['proj'\]=4e\+38"):
        klr.LoRAConfig(rank=8, alpha_pattern={"proj": 4e38}, rank_pattern={"out": 1})
    with pytest.raises(ValueError, match=r"AdapterSpec: `alpha` with rank=1 gives the scale"):
        klr.AdapterSpec(rank=1, alpha=1e39)
    assert klr.LoRAConfig(rank=2, alpha=6e38).spec_for("x").scale == 3e38  # the edge fits


def test_alpha_whose_scale_overflows_float16_is_refused_at_the_adapter():
    model = tiny.sequential_mlp()
    before, flags = tiny.weights_of(model), tiny.flags_of(model)
    keras.mixed_precision.set_dtype_policy("mixed_float16")
    try:
        half = tiny.sequential_mlp()
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    half_flags = tiny.flags_of(half)
    with pytest.raises(ValueError, match=re.escape(
            "LoRADense(layer='hidden'): `alpha` with rank=2 gives the scale s = "
            "alpha / rank = 5e+05, beyond the largest float16 value (6.55e+04), "
            "the dtype the layer computes in (dtype policy 'mixed_float16', "
            "adapter 'default'): s·A·B would be Inf, and every output NaN or "
            "Inf once B is non-zero. Received: alpha=1000000.0. Use an alpha of "
            "at most 1.31e+05 for rank 2, or build the model under the 'float32' "
            "policy.")):
        klr.add_adapters(half, targets=["hidden"], rank=2, alpha=1e6)
    assert tiny.flags_of(half) == half_flags
    # The same alpha is fine where the layer computes in float32.
    adapted = klr.add_adapters(model, targets=["hidden"], rank=2, alpha=1e6)
    assert layer_paths(adapted)["hidden"].scale == 5e5
    for a, b in zip(before, tiny.weights_of(model)):
        np.testing.assert_array_equal(a, b)
    assert tiny.flags_of(model) == flags


def _overflowing_in_float16(policy):
    """A model under `policy` whose merged kernel exceeds float16 (70,000),
    while W (60,000) and every output (280) fit."""
    keras.mixed_precision.set_dtype_policy(policy)
    try:
        inputs = keras.Input((4,))
        model = keras.Model(inputs, keras.layers.Dense(3, name="proj")(inputs), name="m")
        adapted = klr.add_adapters(model, targets=["proj"], rank=2)
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    adapter = layer_paths(adapted)["proj"]
    adapter.layer.kernel.assign(np.full((4, 3), 60000, "float32"))
    adapter.lora_a.assign(np.full(adapter.lora_a.shape, 100, "float32"))
    adapter.lora_b.assign(np.full(adapter.lora_b.shape, 50, "float32"))
    return adapted


def test_merge_overflowing_the_compute_dtype_is_refused():
    adapted = _overflowing_in_float16("mixed_float16")
    x = np.full((1, 4), 1e-3, "float32")
    outputs = adapted.predict(x, verbose=0)
    np.testing.assert_allclose(outputs, 280, rtol=1e-3)  # finite unmerged
    before = tiny.weights_of(adapted)
    with pytest.raises(FloatingPointError, match=re.escape(
            "Layer 'proj': Merging layer 'proj' gives 12 kernel value(s) beyond "
            "the range of float16, the dtype the layer computes in (dtype policy "
            "'mixed_float16'; largest magnitude 7e+04): the merged layer's "
            "outputs would be Inf or NaN.") + r".* Nothing was merged\. Merge a copy of "
            r"the model built under the 'float32' policy"):
        klr.merge_adapters(adapted)
    for a, b in zip(before, tiny.weights_of(adapted)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(adapted.predict(x, verbose=0), outputs)


def test_merge_under_mixed_bfloat16_keeps_outputs():
    # bfloat16 has float32's range: the same kernel merges, outputs finite.
    adapted = _overflowing_in_float16("mixed_bfloat16")
    x = np.full((1, 4), 1e-3, "float32")
    merged = klr.merge_adapters(adapted)
    outputs = merged.predict(x, verbose=0)
    assert np.isfinite(outputs).all()
    np.testing.assert_allclose(outputs, adapted.predict(x, verbose=0), rtol=1e-2)


def test_weighted_adapter_over_a_nan_factor_is_refused():
    model = tiny.randomize_adapter(
        klr.add_adapters(tiny.sequential_mlp(), targets=["hidden"], rank=2), "default", 0)
    adapter = layer_paths(model)["hidden"]
    b = adapter.lora_b.numpy()
    b[1, 3] = np.nan
    adapter.lora_b.assign(b)
    before = tiny.weights_of(model)
    with pytest.raises(ValueError, match=r"add_weighted_adapter: weight '.*hidden/lora_b' of "
                                         r"model 'mlp' holds 1 NaN or Inf value\(s\) of 32; every "
                                         r"output through it would be NaN\. Nothing was changed\. "
                                         r"Reload the weights"):
        klr.add_weighted_adapter(model, {"default": 0.5}, "half", combination="cat")
    for a, c in zip(before, tiny.weights_of(model)):
        np.testing.assert_array_equal(a, c)
    assert klr.adapter_names(model) == ["default"]


def test_tensor_the_metadata_does_not_name_is_refused(saved, tmp_path):
    from safetensors import safe_open
    from safetensors.numpy import load_file
    from safetensors.numpy import save_file

    base, path = saved
    with safe_open(str(path), framework="numpy") as handle:
        metadata = handle.metadata()
    tensors = load_file(path)
    tensors["out/lora_a"] = np.zeros((16, 2), "float32")  # an adapter not listed
    tensors["hidden/lora_a.other"] = np.zeros((8, 2), "float32")
    bad = tmp_path / "extra.safetensors"
    save_file(tensors, bad, metadata=metadata)
    before = tiny.weights_of(base)
    with pytest.raises(ValueError, match=re.escape(
            f"The adapter file '{bad}' holds 2 tensor(s) that its metadata does "
            "not name ('hidden/lora_a.other', 'out/lora_a'); loading would "
            "silently drop them. A file holds the tensors of the adapters and "
            "trainable layers its metadata lists, and no others. Nothing was "
            "loaded.") + r" .*save the adapters again with `klr.save_adapters`"):
        klr.load_adapters(base, bad)
    for a, b in zip(before, tiny.weights_of(base)):
        np.testing.assert_array_equal(a, b)
    assert not any(isinstance(l, klr.layers.LoRAAdapter) for l in layer_paths(base).values())


def test_dora_and_head_tensors_are_named_by_the_metadata(tmp_path):
    base = tiny.sequential_mlp()
    model = _randomized(klr.add_adapters(base, targets=["hidden"], rank=2, use_dora=True,
                                         trainable=["out"]))
    path = tmp_path / "dora.safetensors"
    klr.save_adapters(model, path)
    loaded = klr.load_adapters(base, path)  # lora_magnitude and out/* are named
    x = np.random.default_rng(0).normal(size=(2, 8)).astype("float32")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               atol=1e-6)


@pytest.mark.parametrize("text, shown", [("[1, 2]", "list"), ('"rank"', "str"), ("8", "int")])
def test_config_json_that_is_not_an_object(text, shown):
    with pytest.raises(ValueError, match=re.escape(
            f"LoRAConfig.from_json expected a JSON object of fields "
            f"({{\"rank\": 8, ...}}). Received: a JSON {shown}, {text!r}. Pass the "
            "text that `to_json()` returns.")):
        klr.LoRAConfig.from_json(text)
    with pytest.raises(ValueError, match=r"LoRAConfig.from_dict expected a dict of fields "
                                         r"\(\{field: value\}\)\. Received: list \[1, 2\]"):
        klr.LoRAConfig.from_dict([1, 2])


@pytest.mark.parametrize("names", [None, 5, [None], ["default", 3]])
def test_set_adapter_with_a_name_that_is_not_a_string(names):
    model = klr.add_adapters(tiny.sequential_mlp(), targets=["hidden"], rank=2)
    with pytest.raises(ValueError, match=re.escape(
            f"set_adapter expected an adapter name or a list of adapter names. "
            f"Received: {names!r}. Adapters of model 'mlp': ['default']")):
        klr.set_adapter(model, names)
    assert klr.active_adapters(model) == ["default"]


def test_model_path_that_is_a_file_is_not_called_a_missing_folder(tmp_path):
    import types

    from keras_lowrank.finetune.model_source import model_source
    from keras_lowrank.lm_finetune.causal_lm_loading import read_config

    file = tmp_path / "model.safetensors"
    file.write_bytes(b"")
    with pytest.raises(NotADirectoryError, match=re.escape(
            f"model={str(file)!r} is a file, not a folder. Pass the Hugging Face "
            "BERT folder that holds it")):
        model_source(types.SimpleNamespace(model=str(file)))
    with pytest.raises(NotADirectoryError, match=re.escape(
            f"model={str(file)!r} is a file, not a folder. Pass the Hugging Face "
            "causal-LM folder that holds it")):
        read_config(str(file))
    missing = str(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match=r"no such folder"):
        read_config(missing)
    assert os.listdir(tmp_path) == ["model.safetensors"]
