"""Runtime adapters in ONNX Runtime GenAI: one base folder whose LoRA factors
are graph inputs with zero defaults, two `.onnx_adapter` files switched in
one loaded model with `og.Adapters` / `set_active_adapter`, each generating
Keras' greedy tokens of its adapted model; no adapter gives the base."""

import os

import keras
import pytest

import keras_lowrank as klr
from keras_lowrank.generation import cached_causal_lm
from keras_lowrank.generation.keras_reference import GreedyReference
from keras_lowrank.generation.onnx_genai_adapter import ADAPTER_INPUTS_FILE
from keras_lowrank.generation.onnx_genai_adapter import factor_input_names
from keras_lowrank.generation.onnx_genai_adapter import write_onnx_genai_adapter
from keras_lowrank.generation.onnx_genai_check import GenAIGenerator
from keras_lowrank.generation.onnx_genai_export import export_onnx_genai
from tests.generation import tiny_lms
from tests.generation.test_onnx_genai import write_letter_tokenizer
from tests.tiny_models import random_factors

MAX_LENGTH = 32
NEW_TOKENS = 8
START = 1
PROMPTS = ["hello there", "The capital of France is"]


def _with_random_b(base, seed, **options):
    """`base` with fresh adapters whose `B` is random (not zero), so that
    the adapter changes the output."""
    return random_factors(klr.add_adapters(base, **options), seed, spread=0.8)


@pytest.fixture(scope="module")
def models():
    keras.utils.set_random_seed(5)
    base = tiny_lms.llama()
    # Two tasks: ranks 4 and 2, scales 2.0 and 1.0.
    return (base, _with_random_b(base, 1, rank=4, alpha=8.0),
            _with_random_b(base, 2, rank=2, alpha=2.0))


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return write_letter_tokenizer(str(tmp_path_factory.mktemp("letters")))


@pytest.fixture(scope="module")
def exported(models, tokenizer, tmp_path_factory):
    """(report, folder, {name: adapter file}) of task a's base folder."""
    _, task_a, task_b = models
    root = tmp_path_factory.mktemp("genai_adapters")
    folder = str(root / "base")
    report = export_onnx_genai(
        task_a, folder, runtime_adapters=True, max_length=MAX_LENGTH,
        tokenizer=tokenizer, start_token_id=START, prompts=PROMPTS,
        max_new_tokens=NEW_TOKENS)
    files = {}
    for name, model in (("a", task_a), ("b", task_b)):
        files[name] = str(root / f"{name}.onnx_adapter")
        assert write_onnx_genai_adapter(model, folder, files[name]) == \
            os.path.getsize(files[name])
    return report, folder, files


def _prompts(tokenizer):
    """`[(prompt ids, new tokens)]`: Keras' ids, tokens up to the context."""
    from tokenizers import Tokenizer

    encoded = [[START] + Tokenizer.from_file(tokenizer).encode(t).ids for t in PROMPTS]
    return [(ids, min(NEW_TOKENS, MAX_LENGTH - len(ids))) for ids in encoded]


def _until_stop(tokens):
    return tokens[:tokens.index(2) + 1] if 2 in tokens else tokens


def test_two_adapters_switched_in_one_model(models, exported, tokenizer):
    base, task_a, task_b = models
    report, folder, files = exported
    assert report.verified and report.prompts_matching == len(PROMPTS)
    assert report.tokens_matching == report.tokens_compared >= len(PROMPTS)
    generator = GenAIGenerator(folder)
    for name, path in files.items():
        generator.load_adapter(path, name)
    cache_shape = cached_causal_lm.cache_shape(base, MAX_LENGTH)
    keras_tokens = {}
    for name, model in (("a", task_a), ("b", task_b), (None, base)):
        reference = GreedyReference(model, cache_shape)  # one trace per model
        keras_tokens[name] = [_until_stop(list(reference(ids, n).tokens))
                              for ids, n in _prompts(tokenizer)]
    # Switched back and forth in the one loaded model.
    for name in ("a", "b", None, "a"):
        generator.use_adapter(name)
        genai_tokens = [list(generator.greedy(ids, n).tokens)
                        for ids, n in _prompts(tokenizer)]
        assert genai_tokens == keras_tokens[name], name
    # Each adapter changes the output.
    assert keras_tokens["a"] != keras_tokens[None] != keras_tokens["b"]
    assert keras_tokens["a"] != keras_tokens["b"]


def test_folder_takes_factors_named_by_layer_with_zero_defaults(models, exported):
    import onnx
    from onnx import numpy_helper

    _, task_a, _ = models
    report, folder, files = exported
    proto = onnx.load(os.path.join(folder, "model.onnx"))
    paths = klr.adapter_paths(task_a)
    names = [n for p in paths for n in factor_input_names(p)]
    inputs = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim]
              for i in proto.graph.input}
    assert [n for n in inputs if n.endswith(("/lora_a", "/lora_b"))] == names
    defaults = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer
                if t.name in names}
    assert sorted(defaults) == sorted(names)
    assert all(not a.any() for a in defaults.values())
    assert inputs[names[0]] == [16, 4] and inputs[names[1]] == [4, 16]
    assert ADAPTER_INPUTS_FILE in report.files
    # Rank 2 padded to the folder's 4: the file holds the same shapes.
    from onnxruntime import AdapterFormat

    loaded = AdapterFormat.read_adapter(files["b"]).get_parameters()
    assert sorted(loaded) == sorted(names)
    b = loaded[names[1]].numpy()
    assert b.shape == (4, 16) and not b[2:].any() and b[:2].any()


def _refused(model, folder, tmp_path, pattern):
    path = tmp_path / "x.onnx_adapter"
    with pytest.raises(ValueError, match=pattern):
        write_onnx_genai_adapter(model, folder, path)
    assert os.listdir(tmp_path) == []


def test_adapter_on_a_layer_without_inputs_is_refused(models, exported, tmp_path):
    base = models[0]
    more = _with_random_b(base, 3, rank=2, targets=("query", "value", "key"))
    _refused(more, exported[1], tmp_path,
             r"takes no factors for: \[.*key.*\]\. Merge those adapters into "
             r"the base with klr.merge_adapters")


def test_rank_above_the_folders_is_refused(models, exported, tmp_path):
    wide = _with_random_b(models[0], 3, rank=8)
    _refused(wide, exported[1], tmp_path, r"rank 8 is above the artifact's 4")


def test_adapter_of_another_base_is_refused(exported, tmp_path):
    import keras_hub

    wider = keras_hub.models.Llama3Backbone(  # hidden_dim 32, not 16
        vocabulary_size=tiny_lms.VOCAB, num_layers=2, num_query_heads=4,
        num_key_value_heads=2, hidden_dim=32, intermediate_dim=32)
    other = _with_random_b(
        keras_hub.models.Llama3CausalLM(backbone=wider, preprocessor=None), 4,
        rank=2)
    _refused(other, exported[1], tmp_path, r"do not fit the artifact's")


def test_dora_is_refused(models, exported, tmp_path):
    dora = _with_random_b(models[0], 3, rank=2, use_dora=True)
    _refused(dora, exported[1], tmp_path,
             r"write_onnx_genai_adapter takes one plain LoRA adapter per layer")


def test_folder_without_adapter_inputs_and_bad_suffix_are_refused(
        models, tmp_path):
    folder = tmp_path / "merged"
    folder.mkdir()
    target = tmp_path / "out"
    target.mkdir()
    _refused(models[1], str(folder), target, r"not a GenAI folder exported "
             r"with runtime_adapters=True")
    with pytest.raises(ValueError, match=r"must end in \.onnx_adapter"):
        write_onnx_genai_adapter(models[1], str(folder), target / "a.npz")


def test_runtime_adapters_need_adapters(models, tokenizer, tmp_path):
    with pytest.raises(ValueError, match=r"runtime_adapters=True needs a model "
                       r"with LoRA adapters"):
        export_onnx_genai(models[0], str(tmp_path / "f"), runtime_adapters=True,
                          tokenizer=tokenizer, max_length=MAX_LENGTH)
    assert os.listdir(tmp_path) == []


def test_write_runtime_adapter_dispatches_on_a_genai_folder(models, exported, tmp_path):
    from keras_lowrank.generation import write_runtime_adapter

    _, _, task_b = models
    _, folder, files = exported
    path = tmp_path / "b.onnx_adapter"
    assert write_runtime_adapter(task_b, folder, str(path)) == os.path.getsize(path)
    with open(path, "rb") as ours, open(files["b"], "rb") as direct:
        assert ours.read() == direct.read()
