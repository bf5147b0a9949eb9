"""`klr.distribution` in this process: TF_CONFIG, the chief, files, layouts.

No strategy is created here (a multi-worker one would configure this
process's collectives): the runs themselves are in the other test files.
"""

import json
import os
import re

import keras
import numpy as np
import pytest
import safetensors.numpy

import keras_lowrank as klr
from keras_lowrank.distribution.layouts import factor_axes
from keras_lowrank.layers import KernelLayout
from tests import tiny_models as tiny

CLUSTER = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}


def tf_config(monkeypatch, task, cluster=CLUSTER):
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": task}))


@pytest.fixture
def adapted():
    return klr.add_adapters(tiny.sequential_mlp(), rank=2, targets="all-linear")


# === tf_strategy and TF_CONFIG ===


def test_multi_worker_without_tf_config_is_one_clear_line(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="multi-worker training needs TF_CONFIG") as info:
        klr.distribution.tf_strategy("multi-worker")
    message = str(info.value)
    assert "\n" not in message
    assert "Received: TF_CONFIG unset" in message
    assert '"task": {"type": "worker", "index": 0}' in message


@pytest.mark.parametrize(
    "raw, pattern",
    [
        ("{not json", "TF_CONFIG is not valid JSON"),
        (json.dumps({"cluster": CLUSTER}), "needs a non-empty 'cluster' and a 'task'"),
        (json.dumps({"cluster": {}, "task": {"type": "worker", "index": 0}}),
         "needs a non-empty 'cluster'"),
        (json.dumps({"cluster": CLUSTER, "task": {"type": "worker", "index": 2}}),
         "task {'type': 'worker', 'index': 2} is not in its cluster"),
        (json.dumps({"cluster": CLUSTER, "task": {"type": "chief", "index": 0}}),
         "task {'type': 'chief', 'index': 0} is not in its cluster"),
    ],
)
def test_a_malformed_tf_config_is_named(monkeypatch, raw, pattern):
    monkeypatch.setenv("TF_CONFIG", raw)
    with pytest.raises(ValueError, match=re.escape(pattern)) as info:
        klr.distribution.tf_strategy("multi-worker")
    assert "\n" not in str(info.value)


def test_tf_config_is_returned_parsed(monkeypatch):
    tf_config(monkeypatch, {"type": "worker", "index": 1})
    assert klr.distribution.tf_config() == {
        "cluster": CLUSTER, "task": {"type": "worker", "index": 1}
    }


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"kind": "parameter-server"},
         r"Unknown kind='parameter-server'. Supported kinds are: \['mirrored', 'multi-worker'\]"),
        ({"kind": "multi-worker", "devices": ["/cpu:0"]}, "devices= is for kind='mirrored'"),
        ({"kind": "mirrored", "timeout_seconds": 5}, "timeout_seconds= is for kind='multi-worker'"),
        ({"kind": "multi-worker", "timeout_seconds": 0},
         "expected a positive number of seconds or None. Received: timeout_seconds=0"),
        ({"kind": "multi-worker", "timeout_seconds": True}, "Received: timeout_seconds=True"),
        ({"kind": "mirrored", "register_timeout_seconds": 5},
         "register_timeout_seconds= is for kind='multi-worker'"),
        ({"kind": "multi-worker", "register_timeout_seconds": float("inf")},
         "Received: register_timeout_seconds=inf"),
    ],
)
def test_bad_arguments_are_refused(monkeypatch, kwargs, pattern):
    tf_config(monkeypatch, {"type": "worker", "index": 0})
    with pytest.raises(ValueError, match=pattern):
        klr.distribution.tf_strategy(**kwargs)


def test_another_backend_is_pointed_at_keras_distribution(monkeypatch):
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    with pytest.raises(ValueError, match="needs the TensorFlow backend.*DataParallel"):
        klr.distribution.tf_strategy("mirrored")


def test_mirrored_on_this_process_is_a_mirrored_strategy():
    import tensorflow as tf

    strategy = klr.distribution.tf_strategy("mirrored", devices=["/cpu:0"])
    assert type(strategy) is tf.distribute.MirroredStrategy
    assert strategy.num_replicas_in_sync == 1


# === The chief ===


@pytest.mark.parametrize(
    "task, cluster, chief",
    [
        (None, None, True),  # no TF_CONFIG: the only process
        ({"type": "worker", "index": 0}, CLUSTER, True),
        ({"type": "worker", "index": 1}, CLUSTER, False),
        ({"type": "chief", "index": 0}, {**CLUSTER, "chief": ["127.0.0.1:3"]}, True),
        ({"type": "worker", "index": 0}, {**CLUSTER, "chief": ["127.0.0.1:3"]}, False),
        ({"type": "evaluator", "index": 0}, {**CLUSTER, "evaluator": ["127.0.0.1:4"]}, False),
    ],
)
def test_is_chief_follows_tensorflow(monkeypatch, task, cluster, chief):
    if task is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        tf_config(monkeypatch, task, cluster)
    assert klr.distribution.is_chief() is chief


def test_the_chief_writes_what_save_adapters_writes(monkeypatch, tmp_path, adapted):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    written = klr.distribution.save_adapters(adapted, tmp_path / "chief.safetensors")
    klr.save_adapters(adapted, tmp_path / "plain.safetensors")
    assert written == os.path.getsize(tmp_path / "chief.safetensors") > 0
    chief = safetensors.numpy.load_file(tmp_path / "chief.safetensors")
    plain = safetensors.numpy.load_file(tmp_path / "plain.safetensors")
    assert sorted(chief) == sorted(plain)
    assert all((chief[key] == plain[key]).all() for key in chief)
    assert klr.read_adapter_metadata(tmp_path / "chief.safetensors") == (
        klr.read_adapter_metadata(tmp_path / "plain.safetensors"))


def test_another_worker_writes_nothing_and_leaves_nothing(monkeypatch, tmp_path, adapted):
    tf_config(monkeypatch, {"type": "worker", "index": 1})
    scratch = tmp_path / "worker_tmp"
    scratch.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(scratch))
    written = []
    original = safetensors.numpy.save_file
    monkeypatch.setattr(
        safetensors.numpy, "save_file",
        lambda tensors, path, **kw: (written.append(str(path)), original(tensors, path, **kw)),
    )
    assert klr.distribution.save_adapters(adapted, tmp_path / "a.safetensors") == 0
    assert len(written) == 1 and written[0].startswith(str(scratch))  # it did write
    assert os.listdir(tmp_path) == ["worker_tmp"]
    assert os.listdir(scratch) == []


@pytest.mark.parametrize("task", [None, {"type": "worker", "index": 1}])
def test_a_non_finite_weight_fails_on_every_worker_alike(monkeypatch, tmp_path, adapted, task):
    if task is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        tf_config(monkeypatch, task)
    factor = adapted.trainable_weights[0]
    factor.assign(np.full(factor.shape, np.nan, "float32"))
    with pytest.raises(ValueError, match=f"tensor '{factor.path}' holds"):
        klr.distribution.save_adapters(adapted, tmp_path / "a.safetensors")
    assert not (tmp_path / "a.safetensors").exists()


def test_save_adapters_wants_a_path(adapted):
    with pytest.raises(ValueError, match="Received: path=None"):
        klr.distribution.save_adapters(adapted, None)


def test_a_chief_killed_mid_write_leaves_its_last_file(monkeypatch, tmp_path, adapted):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    path = tmp_path / "adapters.safetensors"
    klr.distribution.save_adapters(adapted, path)
    before = path.read_bytes()
    factor = adapted.trainable_weights[0]
    factor.assign(factor.numpy() + 1.0)

    def dies_half_way(tensors, target, **kwargs):
        with open(target, "wb") as file:
            file.write(before[: len(before) // 2])
        raise KeyboardInterrupt  # as the process being killed mid-write

    monkeypatch.setattr(safetensors.numpy, "save_file", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        klr.distribution.save_adapters(adapted, path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["adapters.safetensors"]
    loaded = klr.load_adapters(tiny.sequential_mlp(), path)
    assert klr.adapter_paths(loaded) == klr.adapter_paths(adapted)


# === check_distributed ===


def test_check_distributed_wants_an_engine(adapted):
    with pytest.raises(TypeError, match="Received: engine='mirrored'"):
        klr.distribution.check_distributed(adapted, "mirrored")


def test_check_distributed_refuses_plain_variables(adapted):
    strategy = klr.distribution.tf_strategy("mirrored", devices=["/cpu:0"])
    with pytest.raises(ValueError, match="was not created in the scope of MirroredStrategy"):
        klr.distribution.check_distributed(adapted, strategy)
    with strategy.scope():
        inside = klr.add_adapters(tiny.sequential_mlp(), rank=2, targets="all-linear")
    assert klr.distribution.check_distributed(inside, strategy) == len(inside.weights)


# === Layouts of the factors ===


@pytest.mark.parametrize(
    "equation, shape, kernel_axes, a, b",
    [
        # Dense, column- and row-parallel.
        ("...a,ab->...b", (16, 32), (None, "model"), (None, None), (None, "model")),
        ("...a,ab->...b", (32, 16), ("model", None), ("model", None), (None, None)),
        # Attention query (hidden, heads, head_dim) and output (heads, head_dim, hidden).
        ("abc,cde->abde", (16, 2, 8), (None, "model", None), (None, None), (None, "model")),
        ("abcd,cde->abe", (2, 8, 16), ("model", None, None), ("model", None), (None, None)),
        # Two sharded output axes flatten into one, major first.
        ("abc,cde->abde", (16, 2, 8), ("data", "model", "seq"), ("data", None),
         (None, ("model", "seq"))),
        # A kernel axis sharded over two mesh axes.
        ("...a,ab->...b", (16, 32), (("data", "model"), None), (("data", "model"), None),
         (None, None)),
    ],
)
def test_factor_axes(equation, shape, kernel_axes, a, b):
    layout = KernelLayout.for_einsum(equation, shape)
    axes = factor_axes(kernel_axes, layout)
    assert axes == {"lora_a": a, "lora_b": b, "lora_magnitude": (b[1],)}


def test_a_convolution_kernel_shards_a_by_its_window_and_channels():
    layout = KernelLayout.for_conv((3, 3, 8, 16))
    axes = factor_axes((None, None, "model", None), layout)
    assert axes["lora_a"] == ("model", None) and axes["lora_b"] == (None, None)


def test_factor_axes_wants_one_axis_per_kernel_axis():
    layout = KernelLayout.for_dense((16, 32))
    with pytest.raises(ValueError, match=r"needs one layout axis per kernel axis. Received: axes=\('model',\)"):
        factor_axes(("model",), layout)


@pytest.fixture
def layout_map():
    mesh = keras.distribution.DeviceMesh((2,), ["model"], devices=["cpu:0", "cpu:1"])
    layout_map = keras.distribution.LayoutMap(mesh)
    # Meant for "every weight of query but its bias": matches its factors too.
    layout_map[".*query/(?!bias).*"] = (None, "model", None)
    layout_map[".*intermediate_dense/kernel"] = (None, "model")
    return layout_map


QUERY = "transformer_layer_0/self_attention_layer/query"


def test_lora_layout_map_lays_out_every_factor_name(layout_map):
    rules = klr.distribution.lora_layout_map(layout_map, tiny.bert_classifier())
    assert isinstance(rules, keras.distribution.LayoutMap)
    assert rules[f"{QUERY}/kernel"].axes == (None, "model", None)  # the base's own
    assert rules[f"{QUERY}/lora_a"].axes == (None, None)
    assert rules[f"{QUERY}/lora_b"].axes == (None, "model")
    assert rules[f"{QUERY}/lora_b_other"].axes == (None, "model")  # a named adapter
    assert rules[f"{QUERY}/lora_magnitude"].axes == ("model",)  # DoRA
    assert rules["transformer_layer_0/feedforward_intermediate_dense/lora_b"].axes == (
        None, "model")
    # A layer no pattern shards: replicated factors. A non-factor: the base's answer.
    assert rules["pooled_dense/lora_a"].axes == (None, None)
    assert rules["pooled_dense/kernel"] is None
    assert rules[f"{QUERY}/lora_a"].device_mesh is layout_map.device_mesh


def test_lora_layout_map_knows_an_adapted_model_too(layout_map):
    adapted = klr.add_adapters(tiny.bert_classifier(), rank=2)
    rules = klr.distribution.lora_layout_map(layout_map, adapted)
    assert rules[f"{QUERY}/lora_b"].axes == (None, "model")


def test_lora_layout_map_refuses_a_factor_of_another_model(layout_map):
    rules = klr.distribution.lora_layout_map(layout_map, tiny.bert_classifier())
    with pytest.raises(ValueError, match="has no adaptable layer at 'other_model/dense'"):
        rules["other_model/dense/lora_a"]


def test_lora_layout_map_names_a_kernel_layout_of_the_wrong_rank(layout_map):
    layout_map[".*value/kernel"] = (None, "model")  # the kernel is (16, 2, 8)
    rules = klr.distribution.lora_layout_map(layout_map, tiny.bert_classifier())
    with pytest.raises(ValueError, match="Kernel 'transformer_layer_0/self_attention_layer/value/kernel'"):
        rules["transformer_layer_0/self_attention_layer/value/lora_a"]


def test_lora_layout_map_wants_a_layout_map():
    with pytest.raises(TypeError, match="expected a keras.distribution.LayoutMap"):
        klr.distribution.lora_layout_map({".*": (None,)}, tiny.bert_classifier())
