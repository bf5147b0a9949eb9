"""Several named adapters per model: add, choose, disable, delete, combine,
save, load and merge them (issue 10, part 4)."""

import contextlib

import keras
import numpy as np
import pytest

import keras_lowrank as klr
from keras_lowrank.adapters.summary import parameter_counts
from keras_lowrank.surgery.layer_paths import layer_paths
from tests import tiny_models as tiny

QUERY = "transformer_layer_0/self_attention_layer/query"
KEY = "transformer_layer_0/self_attention_layer/key"


@pytest.fixture(scope="module")
def base():
    return tiny.bert_classifier()


@pytest.fixture(scope="module")
def two(base):
    """`default` on query/value (rank 2), `task_b` on query/key (rank 3)."""
    model = tiny.randomize_adapter(klr.add_adapters(base, rank=2), "default", 1)
    model = klr.add_adapters(model, targets=["query", "key"], rank=3, alpha=6,
                             adapter_name="task_b")
    return tiny.randomize_adapter(model, "task_b", 2)


@contextlib.contextmanager
def _active(model, names):
    """Makes `names` the active adapters of the shared `two` for a block, and
    gives it back its own (`task_b`) however the block ends."""
    klr.set_adapter(model, names)
    try:
        yield model
    finally:
        klr.set_adapter(model, "task_b")


@pytest.fixture(autouse=True)
def _two_left_as_built(request):
    """Each test leaves the module's `two` as `two` builds it: only task_b
    active (a failing test must not change what the next one sees)."""
    yield
    if "two" in request.fixturenames:
        assert klr.active_adapters(request.getfixturevalue("two")) == ["task_b"]


def _predict(model):
    return model.predict(tiny.bert_inputs(), verbose=0)


def _only(model, name):
    return _predict(klr.merge_adapters(model, adapter_name=name))


def test_a_second_adapter_is_added_active_and_alone_trainable(base, two):
    assert klr.adapter_names(two) == ["default", "task_b"]
    assert klr.active_adapters(two) == ["task_b"]
    query = layer_paths(two)[QUERY]
    assert query.adapter_names == ("default", "task_b")
    assert query.view("task_b").spec == klr.AdapterSpec(rank=3, alpha=6)
    trainable = {w.path.rsplit("/", 1)[-1] for w in two.trainable_weights}
    assert trainable == {"lora_a_task_b", "lora_b_task_b", "lora_a", "lora_b", "kernel", "bias"}
    # task_b: query and key of 2 blocks, rank 3, (16 + 16) each; plus the head (16*2 + 2).
    assert parameter_counts(two)[0] == 2 * 2 * 3 * (16 + 16) + 34
    # The layers without task_b (value) act as their base layers.
    assert layer_paths(two)["transformer_layer_0/self_attention_layer/value"].active == ()


def test_disable_adapters_gives_the_base_outputs_bit_for_bit(base, two):
    with _active(two, ["default", "task_b"]):
        with klr.disable_adapters(two):
            np.testing.assert_array_equal(_predict(two), _predict(base))
        assert klr.active_adapters(two) == ["default", "task_b"]


def test_several_active_adapters_add_up(two):
    with _active(two, ["default", "task_b"]):
        both = _predict(two)
        query = layer_paths(two)[QUERY]
        want = (query.base_kernel.numpy() + query.delta_kernel().numpy()
                + query.view("task_b").delta_kernel().numpy())
        merged = klr.merge_adapters(two)
        np.testing.assert_allclose(layer_paths(merged)[QUERY].kernel.numpy(), want, atol=1e-6)
        assert np.abs(_predict(merged) - both).max() < 1e-5


def test_set_adapter_switches_outputs_and_training(two):
    with _active(two, "default"):
        np.testing.assert_allclose(_predict(two), _only(two, "default"), atol=1e-5)
        names = {w.path.rsplit("/", 1)[-1] for w in two.trainable_weights}
        assert "lora_a_task_b" not in names and "lora_a" in names
        klr.set_adapter(two, "task_b")
        np.testing.assert_allclose(_predict(two), _only(two, "task_b"), atol=1e-5)


def test_unknown_names_list_the_adapters(two):
    for call in (lambda: klr.set_adapter(two, "nope"),
                 lambda: klr.merge_adapters(two, adapter_name="nope"),
                 lambda: klr.delete_adapter(two, "nope")):
        with pytest.raises(ValueError, match=r"has no adapter named 'nope'. Its adapters: "
                                             r"\['default', 'task_b'\]"):
            call()


def test_adding_needs_a_new_name(two):
    with pytest.raises(ValueError, match=r"already holds a LoRAEinsumDense \(adapters "
                                         r"\['default', 'task_b'\]\). Pass adapter_name="):
        klr.add_adapters(two, rank=2)
    with pytest.raises(ValueError, match=r"already has an adapter named 'task_b'"):
        klr.add_adapters(two, rank=2, adapter_name="task_b")
    with pytest.raises(ValueError, match=r"init='pissa' rewrites the base kernel"):
        klr.add_adapters(two, rank=2, adapter_name="c", init="pissa")
    with pytest.raises(ValueError, match=r"An adapter name is a non-empty string"):
        klr.add_adapters(two, rank=2, adapter_name="a/b")


def test_delete_adapter_returns_a_new_model(two):
    with _active(two, ["default", "task_b"]):
        kept = klr.delete_adapter(two, "task_b")
        assert klr.adapter_names(two) == ["default", "task_b"]
        assert klr.adapter_names(kept) == ["default"]
        assert KEY not in klr.adapter_paths(kept)  # key held task_b only
        np.testing.assert_allclose(_predict(kept), _only(two, "default"), atol=1e-5)


def test_save_and_load_keep_names_and_active(base, two, tmp_path):
    with _active(two, ["default", "task_b"]):
        path = tmp_path / "two.safetensors"
        klr.save_adapters(two, path)
        meta = klr.read_adapter_metadata(path)
        assert set(meta["adapters"]) == {QUERY, "transformer_layer_0/self_attention_layer/value",
                                          "transformer_layer_1/self_attention_layer/query",
                                          "transformer_layer_1/self_attention_layer/value"}
        assert set(meta["named_adapters"]) == {"task_b"}
        assert meta["active"] == ["default", "task_b"]
        loaded = klr.load_adapters(base, path)
        assert klr.adapter_names(loaded) == ["default", "task_b"]
        assert klr.active_adapters(loaded) == ["default", "task_b"]
        np.testing.assert_array_equal(_predict(loaded), _predict(two))
        for name in ("default", "task_b"):
            klr.set_adapter(loaded, name)
            klr.set_adapter(two, name)
            np.testing.assert_array_equal(_predict(loaded), _predict(two))


def test_keras_file_keeps_names_and_active(two, tmp_path):
    with _active(two, ["default", "task_b"]):
        path = tmp_path / "two.keras"
        two.save(path)
        loaded = keras.models.load_model(path, compile=False)
        assert klr.active_adapters(loaded) == ["default", "task_b"]
        np.testing.assert_array_equal(_predict(loaded), _predict(two))


def _delta(model, path, name):
    return layer_paths(model)[path].view(name).delta_kernel().numpy()


@pytest.mark.parametrize("combination, svd_rank", [("cat", None), ("svd", 5)])
def test_weighted_adapter_is_the_weighted_sum_of_deltas(two, combination, svd_rank):
    mixed = klr.add_weighted_adapter(two, {"default": 0.7, "task_b": -0.3}, "ab",
                                     combination=combination, svd_rank=svd_rank)
    assert klr.adapter_names(mixed) == ["default", "task_b", "ab"]
    assert klr.active_adapters(mixed) == ["task_b"]  # not made active
    for path in (QUERY, KEY):
        layer = layer_paths(mixed)[path]
        want = sum(w * _delta(two, path, n) for n, w in (("default", 0.7), ("task_b", -0.3))
                   if n in layer.adapter_names)
        got = layer.view("ab").delta_kernel().numpy()
        assert np.abs(got - want).max() < 1e-5
    assert layer_paths(mixed)[QUERY].view("ab").rank == 5


def test_svd_at_a_lower_rank_is_the_best_approximation(two):
    mixed = klr.add_weighted_adapter(two, {"default": 1.0, "task_b": 1.0}, "ab",
                                     combination="svd", svd_rank=2)
    want = _delta(two, QUERY, "default") + _delta(two, QUERY, "task_b")
    matrix = want.reshape(16, 16)
    sigma = np.linalg.svd(matrix, compute_uv=False)
    got = layer_paths(mixed)[QUERY].view("ab").delta_kernel().numpy().reshape(16, 16)
    # Eckart-Young: the error is the dropped singular values, no more.
    assert abs(np.linalg.norm(got - matrix) - np.sqrt((sigma[2:] ** 2).sum())) < 1e-4


def test_weighted_adapter_errors(two):
    with pytest.raises(ValueError, match=r"Layer '.*query': combination='linear' needs adapters "
                                         r"of one rank; they have ranks \[2, 3\]"):
        klr.add_weighted_adapter(two, {"default": 0.5, "task_b": 0.5}, "ab", combination="linear")
    with pytest.raises(ValueError, match=r"must be > 0. Received: weights\['default'\]=-1"):
        klr.add_weighted_adapter(two, {"default": -1}, "ab", combination="linear")
    with pytest.raises(ValueError, match=r"finite numbers as weights. Received: weights\['default'\]=nan"):
        klr.add_weighted_adapter(two, {"default": float("nan")}, "ab")
    with pytest.raises(ValueError, match=r"unknown combination. Received: combination='ties'"):
        klr.add_weighted_adapter(two, {"default": 1.0}, "ab", combination="ties")
    with pytest.raises(ValueError, match=r"has no adapter named 'c'"):
        klr.add_weighted_adapter(two, {"c": 1.0}, "ab")
    with pytest.raises(ValueError, match=r"already has an adapter named 'default'"):
        klr.add_weighted_adapter(two, {"task_b": 1.0}, "default")


def test_linear_matches_its_formula(base):
    model = tiny.randomize_adapter(klr.add_adapters(base, rank=2), "default", 1)
    model = tiny.randomize_adapter(klr.add_adapters(model, rank=2, alpha=4, adapter_name="b"), "b", 2)
    mixed = klr.add_weighted_adapter(model, {"default": 0.25, "b": 0.5}, "lin",
                                     combination="linear")
    layer = layer_paths(mixed)[QUERY]
    d, b = layer.view("default"), layer.view("b")
    a = 0.5 * d.scale * d.lora_a.numpy() + np.sqrt(0.5) * b.scale * b.lora_a.numpy()
    bb = 0.5 * d.lora_b.numpy() + np.sqrt(0.5) * b.lora_b.numpy()
    np.testing.assert_allclose(layer.view("lin").lora_a.numpy(), a, atol=1e-6)
    np.testing.assert_allclose(layer.view("lin").lora_b.numpy(), bb, atol=1e-6)
    assert layer.view("lin").scale == 1.0
