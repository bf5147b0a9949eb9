"""`export_generator` on tiny Llama 3, GPT-2 and Gemma causal LMs: greedy
generation from the LiteRT and ONNX artifacts equals Keras' token for token."""

import os
import sys

import keras
import numpy as np
import pytest

import keras_lowrank as klr
from keras_lowrank.generation import GenerationVerificationError
from keras_lowrank.generation import export_generator
from keras_lowrank.generation import generation_verification
from keras_lowrank.generation import greedy_reference
from keras_lowrank.generation import load_generator
from keras_lowrank.generation.cached_causal_lm import cache_shape
from keras_lowrank.generation.keras_reference import GreedyReference
from tests.generation import tiny_lms
from tests.generation.conftest import PREFILL_LENGTHS
from tests.generation.references import SharedReference
from tests.tiny_models import random_factors

FORMATS = ("tflite", "onnx")


@pytest.mark.parametrize("format", FORMATS)
@pytest.mark.parametrize("name", sorted(tiny_lms.MODELS))
def test_generation_equals_keras_token_for_token(generators, name, format):
    report, path = generators(name, format)
    # 8 prompts x 32 new tokens, prompt lengths from 1 to 33: the LiteRT
    # runs use both prefill lengths, padding, and several chunks.
    assert report.verified
    assert report.prompts_matching == len(report.prompt_lengths) == 8
    assert report.tokens_compared == report.tokens_matching == 8 * 32
    assert max(report.prompt_lengths) > max(PREFILL_LENGTHS)
    assert report.time_to_first_token_ms > 0 and report.decode_tokens_per_s > 0
    assert report.size_bytes == os.path.getsize(path)
    spec = report.spec
    assert (spec.max_length, spec.vocabulary_size) == (tiny_lms.MAX_LENGTH, tiny_lms.VOCAB)
    assert spec.prefill_lengths == (PREFILL_LENGTHS if format == "tflite" else ())


@pytest.mark.parametrize("name", sorted(tiny_lms.MODELS))
def test_litert_artifact_has_builtin_ops_and_frozen_weights(generators, name):
    from ai_edge_litert.interpreter import Interpreter

    report, path = generators(name, "tflite")
    assert "DYNAMIC_UPDATE_SLICE" in report.ops
    assert not [op for op in report.ops if op.startswith("Flex")]
    assert not {"VAR_HANDLE", "READ_VARIABLE"} & set(report.ops)
    signatures = Interpreter(model_path=path).get_signature_list()
    assert sorted(signatures) == ["decode", "prefill_16", "prefill_8"]
    assert sorted(signatures["prefill_8"]["inputs"]) == [
        "cache", "cache_update_index", "last_index", "token_ids"]
    assert sorted(signatures["decode"]["outputs"]) == ["logits", "next_cache"]


@pytest.mark.parametrize("name", sorted(tiny_lms.MODELS))
def test_onnx_artifact_has_the_cache_as_input_and_output(generators, name):
    import onnx

    report, path = generators(name, "onnx")
    graph = onnx.load(path).graph
    inputs = {i.name: [d.dim_value or d.dim_param for d in i.type.tensor_type.shape.dim]
              for i in graph.input}
    assert sorted(inputs) == ["cache", "cache_update_index", "last_index", "token_ids"]
    assert inputs["cache"] == list(report.spec.cache_shape)
    assert inputs["token_ids"][0] == 1 and isinstance(inputs["token_ids"][1], str)
    assert sorted(o.name for o in graph.output) == ["logits", "next_cache"]
    assert not [i for i in graph.initializer if i.data_type != onnx.TensorProto.FLOAT
                and len(i.dims) > 1 and np.prod(i.dims) > 1000]


def test_runtime_alone_reproduces_keras(tiny_models, tiny_references, generators):
    """The artifacts, loaded again, against Keras on a prompt of this
    test's own that fills the cache: generation stops when it is full."""
    model = tiny_models["llama"]
    prompt = list(range(3, 3 + 60))  # 60 of 64 positions
    expected = tiny_references(model, tiny_lms.MAX_LENGTH).tokens(prompt, 32)
    assert len(expected) == 64 - 60 + 1
    for format in FORMATS:
        result = load_generator(generators("llama", format)[1]).greedy(prompt, 32)
        assert result.tokens == expected
        assert result.stopped == "cache_full"


def test_reference_equals_keras_hub_generate(tiny_models):
    """greedy_reference is keras-hub's own greedy `generate()`."""
    model = tiny_models["gemma"]
    prompt = [5, 17, 33, 2, 60]
    length = len(prompt) + 20
    token_ids = np.zeros((1, length), "int32")
    token_ids[0, :len(prompt)] = prompt
    mask = np.zeros((1, length), bool)
    mask[0, :len(prompt)] = True
    model.compile(sampler="greedy")
    output = model.generate({"token_ids": token_ids, "padding_mask": mask},
                            stop_token_ids=None)
    ours = greedy_reference(model, prompt, 20, 64).tokens
    assert list(output["token_ids"][0, len(prompt):]) == list(ours)


def test_adapters_are_merged(tmp_path):
    base = tiny_lms.llama()
    adapted = random_factors(klr.add_adapters(base, rank=4), 3)
    prompt = [3, 9, 27, 11]
    # The export's check runs the adapted model (unmerged) in Keras: the
    # same reference, its tokens generated once.
    reference = SharedReference(adapted, 32)
    adapted_tokens = reference.tokens(prompt, 16)
    assert adapted_tokens != greedy_reference(base, prompt, 16, 32).tokens
    path = tmp_path / "adapted.tflite"
    report = export_generator(adapted, path, "tflite", max_length=32,
                              prefill_lengths=(8,), prompts=[prompt],
                              max_new_tokens=16, reference=reference)
    assert report.tokens_matching == 16
    assert load_generator(path).greedy(prompt, 16).tokens == adapted_tokens
    assert klr.adapter_paths(adapted)


@pytest.fixture(scope="module")
def text_export(tiny_models, word_tokenizer, tmp_path_factory):
    """A Llama ONNX generator checked on text prompts, with stop tokens,
    against a `reference` the caller made: one export for the two tests
    below."""
    model = tiny_models["llama"]
    path = tmp_path_factory.mktemp("text") / "lm.onnx"
    reference = SharedReference(model, 32)
    report = export_generator(
        model, path, "onnx", max_length=32,
        tokenizer=word_tokenizer, prompts=["w5 w6 w7", "w40"], max_new_tokens=8,
        stop_token_ids=(2,), reference=reference,
    )
    return report, path, reference


def test_text_prompts_and_stop_tokens(text_export):
    report, path, _ = text_export
    assert report.prompt_lengths == (3, 1) and report.tokens_matching == 16
    assert "greedy tokens equal to Keras: 16/16 (2/2 prompts" in str(report)
    assert report.to_dict()["spec"]["stop_token_ids"] == (2,)
    assert load_generator(path).spec.stop_token_ids == (2,)


def test_a_difference_from_keras_writes_nothing(tiny_models, tiny_references, tmp_path,
                                               monkeypatch):
    path = tmp_path / "lm.tflite"
    path.write_bytes(b"earlier")
    original = generation_verification.verify_generation

    def wrong_reference(generator, prompts, max_new_tokens, expected, **kwargs):
        expected[0] = type(expected[0])((expected[0].tokens[0] + 1,)
                                        + expected[0].tokens[1:],
                                        expected[0].margins)
        return original(generator, prompts, max_new_tokens, expected, **kwargs)

    # The package's `export_generator` attribute is the function.
    module = sys.modules["keras_lowrank.generation.export_generator"]
    monkeypatch.setattr(module, "verify_generation", wrong_reference)
    with pytest.raises(GenerationVerificationError,
                       match=r"differs from Keras on prompt 0 \(1 tokens\) at "
                             r"new token 0: .*unchanged"):
        # The check fails on its first prompt: one prompt is enough, and
        # Keras' tokens for it come from the session's reference (the
        # stand-in above replaces the list's entry, not the shared one).
        export_generator(tiny_models["llama"], path, "tflite", max_length=32,
                         prefill_lengths=(8,), prompts=[[5]], max_new_tokens=4,
                         reference=tiny_references(tiny_models["llama"], 32))
    assert path.read_bytes() == b"earlier"
    assert os.listdir(tmp_path) == ["lm.tflite"]


# === Bad input: one clear error each, nothing written ===

def _refused(tmp_path, error, pattern, model, format="tflite", **kwargs):
    path = tmp_path / f"out.{format}"
    with pytest.raises(error, match=pattern) as info:
        export_generator(model, path, format, **kwargs)
    assert "\n" not in str(info.value)
    assert not os.listdir(tmp_path)


def test_refuses_a_model_without_a_cache(tmp_path):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    _refused(tmp_path, TypeError,
             r"needs a keras-hub CausalLM whose attention layers take a KV "
             r"cache .*Received: Sequential", model)


def test_refuses_a_backbone(tmp_path, tiny_models):
    _refused(tmp_path, TypeError, r"Received: Llama3Backbone",
             tiny_models["llama"].backbone)


def test_refuses_a_cache_shorter_than_the_longest_prefill(tmp_path, tiny_models):
    _refused(tmp_path, ValueError,
             r"cache \(max_length=16\) is shorter than the longest prefill "
             r"length \(32\)", tiny_models["llama"], max_length=16,
             prefill_lengths=(8, 32))


def test_refuses_a_tokenizer_of_another_vocabulary(tmp_path, tiny_models):
    other = tiny_lms.write_word_tokenizer(tmp_path.parent / "big.json", size=300)
    _refused(tmp_path, ValueError,
             r"big.json does not match the model: its ids go up to 299 \(300 "
             r"tokens\) but the model has a vocabulary of 64",
             tiny_models["gpt2"], "onnx", tokenizer=other, max_length=64)
    small = tiny_lms.write_word_tokenizer(tmp_path.parent / "small.json", size=10)
    model = tiny_lms.llama()
    model.backbone.vocabulary_size = 1000  # only what the check reads
    _refused(tmp_path, ValueError, r"small.json does not match the model",
             model, tokenizer=small)


def test_refuses_a_cache_longer_than_learned_positions(tmp_path, tiny_models):
    _refused(tmp_path, ValueError,
             r"GPT2CausalLM embeds at most 64 positions .*max_length=128",
             tiny_models["gpt2"], max_length=128)


def test_refuses_prefill_lengths_for_onnx(tmp_path, tiny_models):
    _refused(tmp_path, ValueError, r"`prefill_lengths` only applies to "
             r"format='tflite'", tiny_models["llama"], "onnx",
             prefill_lengths=(8,))


@pytest.mark.parametrize("kwargs, pattern", [
    ({"max_length": 0}, r"`max_length` must be a positive integer"),
    ({"max_new_tokens": 0}, r"`max_new_tokens` must be a positive integer"),
    ({"prefill_lengths": ()}, r"`prefill_lengths` must be a non-empty list"),
    ({"prompts": ["w3"]}, r"Text prompts need `tokenizer`"),
    ({"prompts": [[1] * 65]}, r"A prompt of 65 tokens does not fit the cache "
                              r"of max_length=64"),
    ({"prompts": [[64]]}, r"token id in \[0, 64\)"),
    ({"stop_token_ids": (99,)}, r"`stop_token_ids` must be token ids in \[0, 64\)"),
])
def test_refuses_bad_arguments(tmp_path, tiny_models, kwargs, pattern):
    kwargs.setdefault("max_length", 64)
    _refused(tmp_path, ValueError, pattern, tiny_models["llama"], **kwargs)


def test_a_given_reference_is_used_and_checked(tmp_path, tiny_models, text_export):
    model = tiny_models["llama"]
    reference = GreedyReference(model, cache_shape(model, 32))
    # `text_export` was checked against its caller's reference, which
    # generated the export's two prompts (and nothing else).
    report, _, given = text_export
    assert given.generated == [((5, 6, 7), 8), ((40,), 8)]
    assert report.tokens_compared == report.tokens_matching == 16
    refused = tmp_path / "refused"
    refused.mkdir()
    _refused(refused, ValueError, r"`reference` must run the exported model on "
             r"the export's cache shape \(1, 2, 2, 64, 2, 4\). Received: a "
             r"GreedyReference of Llama3CausalLM on \(1, 2, 2, 32, 2, 4\)",
             model, "onnx", max_length=64, reference=reference)
    _refused(refused, TypeError, r"`reference` must be a GreedyReference",
             model, "onnx", max_length=32, reference=[3, 9])


def test_refuses_an_unknown_format(tmp_path, tiny_models):
    _refused(tmp_path, ValueError, r"Unrecognized format='gguf'. Supported "
             r"formats are: \['tflite', 'onnx'\]", tiny_models["llama"], "gguf")


# === The hook for klr.export ===

def test_dispatch_export_takes_causal_lms_in_generation_formats(tiny_models, tmp_path):
    from keras_lowrank.generation import dispatch_export

    model = tiny_models["llama"]
    assert dispatch_export(model, tmp_path / "lm", "saved_model") is None
    assert dispatch_export(model.backbone, tmp_path / "b.tflite", "tflite") is None
    with pytest.raises(ValueError, match=r"Llama3CausalLM is exported for "
                       r"generation .*takes none of \['atol', 'eval_data'\].*"
                       r"Received: atol=0.1, eval_data=\(\['a'\], \[0\]\)"):
        dispatch_export(model, tmp_path / "lm.tflite", "tflite",
                        quantize="dynamic", atol=0.1, eval_data=(["a"], [0]))
    assert not os.listdir(tmp_path)
    report = dispatch_export(model, tmp_path / "lm.onnx", "onnx", verify=False)
    assert not report.verified and report.spec.max_length == 256
    assert load_generator(tmp_path / "lm.onnx").spec == report.spec
    # GPT-2's cache of its 64 learned positions, not 256: through the same
    # hook, test_export_hook.test_cli_export_of_a_causal_lm_file (written
    # and loaded) and test_runtime_formats.
    # test_the_hook_passes_tokenizer_to_export_generator.
