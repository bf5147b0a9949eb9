""".litertlm bundles of tiny causal LMs, run in the real LiteRT-LM engine.

Each bundle is built once per module. The tiny word-level tokenizer maps
`w17` to id 17 and back, so the engine's text gives its token ids exactly.
"""

import functools
import json
import os

import litert_lm
import pytest

from keras_lowrank.generation import GenerationVerificationError
from keras_lowrank.generation import PromptTooLongError
from keras_lowrank.generation.cached_causal_lm import cache_shape
from keras_lowrank.generation.keras_reference import GreedyReference
from keras_lowrank.generation.litertlm_bundle import read_bundle_metadata
from keras_lowrank.generation.litertlm_check import greedy_text
from keras_lowrank.generation.litertlm_check import open_engine
from keras_lowrank.generation.litertlm_export import export_litertlm
from keras_lowrank.generation.litertlm_template import model_template
from keras_lowrank.generation.litertlm_template import runtime_template
from tests.generation import tiny_lms
from tests.generation.litertlm_cases import MAX_LENGTH
from tests.generation.litertlm_cases import NEW_TOKENS
from tests.generation.litertlm_cases import PROMPTS
from tests.generation.litertlm_cases import keras_tokens
from tests.generation.litertlm_cases import word_ids

PREFILL = (8,)
# SmolLM2's template shape (string concatenation of message['content']),
# starting with the start token's text as Gemma's does.
TEMPLATE = ("{{ bos_token }}{% for message in messages %}{{ 'w3 ' + message['role'] + ' ' + "
            "message['content'] + ' w4 ' }}{% endfor %}"
            "{% if add_generation_prompt %}{{ 'w5' }}{% endif %}")


def _tokenizer_folder(folder, size, config=True):
    path = tiny_lms.write_word_tokenizer(folder / "tokenizer.json", size)
    if config:
        with open(folder / "tokenizer_config.json", "w") as file:
            json.dump({"chat_template": TEMPLATE, "bos_token": "<bos>",
                       "eos_token": {"content": "<eos>"}}, file)
    return path


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return _tokenizer_folder(tmp_path_factory.mktemp("tokenizer"), tiny_lms.VOCAB)


@pytest.fixture(scope="module")
def models():
    import keras

    keras.utils.set_random_seed(7)
    return {name: build() for name, build in tiny_lms.MODELS.items()}


@pytest.fixture(scope="module")
def bundles(models, references, tokenizer, tmp_path_factory):
    """`bundles(name)`: (report, path) of a float bundle, built once,
    checked against the model's shared Keras reference (`references`)."""
    folder = tmp_path_factory.mktemp("bundles")

    @functools.cache
    def get(name):
        path = str(folder / f"{name}.litertlm")
        return export_litertlm(
            models[name], path, max_length=MAX_LENGTH,
            prefill_lengths=PREFILL, tokenizer=tokenizer, prompts=PROMPTS,
            max_new_tokens=NEW_TOKENS,
            reference=references(models[name], MAX_LENGTH)), path

    return get


@pytest.fixture(scope="module")
def int8(tmp_path_factory):
    """A Llama wide enough for int8, its tokenizer, its Keras reference
    (traced once, reused) and its int8 bundle's report."""
    model = tiny_lms.quantizable_llama()
    tokenizer = _tokenizer_folder(tmp_path_factory.mktemp("tokenizer256"), 256)
    reference = GreedyReference(model, cache_shape(model, MAX_LENGTH))
    path = str(tmp_path_factory.mktemp("int8") / "int8.litertlm")
    report = export_litertlm(
        model, path, max_length=MAX_LENGTH, prefill_lengths=PREFILL,
        tokenizer=tokenizer, prompts=PROMPTS, max_new_tokens=NEW_TOKENS,
        quantize="dynamic", reference=reference)
    return model, tokenizer, reference, report


@pytest.mark.parametrize("name", ["llama", "gemma", "gpt2"])
def test_float_bundle_generates_keras_tokens_in_the_engine(name, models, bundles,
                                                           references):
    report, path = bundles(name)
    reference = references(models[name], MAX_LENGTH)
    with open_engine(path, MAX_LENGTH) as engine:
        for prompt in PROMPTS:
            text, _ = greedy_text(engine, prompt, NEW_TOKENS)
            assert word_ids(text) == keras_tokens(models[name], prompt, reference)
    assert report.tokens_matching == report.tokens_compared > 0
    assert report.prompts_matching == 2 and report.prompt_lengths == (4, 12)
    assert report.conversation_matching is True
    assert report.time_to_first_token_ms > 0 and report.decode_tokens_per_s > 0
    assert report.size_bytes == os.path.getsize(path)
    assert f"{report.tokens_matching}/{report.tokens_compared}" in str(report)


def test_the_conversation_api_applies_the_models_chat_template(models, bundles,
                                                              references):
    _, path = bundles("llama")
    with open_engine(path, MAX_LENGTH) as engine:
        conversation = engine.create_conversation(
            max_output_tokens=NEW_TOKENS,
            sampler_config=litert_lm.SamplerConfig(top_k=1, temperature=0.0))
        reply = str(conversation.send_message("w9 w10").contents[0])
    # The template as transformers renders it: "<bos>w3 user w9 w10 w4 w5",
    # the unknown word `user` as id 0: the start token 1 once, not twice
    # (the runtime's, and the template's text).
    tokens = references(models["llama"], MAX_LENGTH).tokens(
        [1, 3, 0, 9, 10, 4, 5], NEW_TOKENS)
    expected = list(tokens[:tokens.index(2)] if 2 in tokens else tokens)
    assert word_ids(reply) == expected and expected


def test_the_bundle_holds_the_tokens_the_template_and_the_contract(bundles, tmp_path):
    report, path = bundles("llama")
    metadata, sections = read_bundle_metadata(path)
    assert metadata == report.metadata
    assert (metadata.start_token_id, metadata.stop_token_ids) == (1, (2,))
    assert metadata.max_num_tokens == MAX_LENGTH
    assert metadata.chat_template == runtime_template(TEMPLATE, "<bos>")
    assert model_template(metadata.chat_template) == TEMPLATE
    assert sections == (("LlmMetadata", None), ("HF_Tokenizer", None),
                        ("TFLiteModel", "prefill_decode"))
    with open_engine(path, MAX_LENGTH) as engine:
        assert (engine.bos_token_id, engine.eos_token_ids) == (1, [[2]])
    _check_contract(path, tmp_path)


def _check_contract(path, folder):
    from ai_edge_litert.interpreter import Interpreter
    from litert_lm_builder import unpack

    unpack(path, str(folder))
    (model,) = [f for f in os.listdir(folder) if f.endswith(".tflite")]
    interpreter = Interpreter(model_path=str(folder / model))
    kv = [f"kv_cache_{kind}_{i}" for kind in "kv" for i in range(2)]
    # Llama: 2 layers, 2 key-value heads of 4 values.
    shapes = {"input_pos": [1], "tokens": [1, 1], "mask": [1, 1, 1, MAX_LENGTH],
              **{name: [1, MAX_LENGTH, 2, 4] for name in kv}}
    assert set(interpreter.get_signature_list()) == {"decode", "prefill_8"}
    decode = interpreter.get_signature_runner("decode")
    assert {n: list(d["shape"]) for n, d in decode.get_input_details().items()} == shapes
    outputs = {n: list(d["shape"]) for n, d in decode.get_output_details().items()}
    assert outputs == {"logits": [1, 1, tiny_lms.VOCAB],
                       **{name: [1, MAX_LENGTH, 2, 4] for name in kv}}
    prefill = interpreter.get_signature_runner("prefill_8")
    assert list(prefill.get_input_details()["mask"]["shape"]) == [1, 1, 8, MAX_LENGTH]
    assert set(prefill.get_output_details()) == set(kv)


def test_int8_bundle_agrees_with_keras_on_the_next_token(int8, tmp_path):
    _, _, _, report = int8
    # Measured: 12 tokens before the stop token; fed Keras' tokens, the
    # engine picks Keras' next one at 11 of 12 steps (0.917); free running
    # 11/12 too (one prompt whole).
    assert report.quantize == "dynamic" and report.tokens_compared == 12
    assert 0.8 <= report.next_token_agreement < 1.0
    assert report.next_tokens_compared == 12  # word-level: every step fed
    assert "next-token agreement 0.917" in str(report)
    assert _int8_weights(report.path, tmp_path) > 0


def _int8_weights(path, folder):
    from ai_edge_litert import schema_py_generated as schema
    from litert_lm_builder import unpack

    unpack(path, str(folder))
    (name,) = [f for f in os.listdir(folder) if f.endswith(".tflite")]
    model = schema.ModelT.InitFromPackedBuf((folder / name).read_bytes(), 0)
    return sum(t.type == schema.TensorType.INT8 and t.buffer > 0
               and model.buffers[t.buffer].data is not None
               for g in model.subgraphs for t in g.tensors)


def test_a_failed_check_leaves_the_earlier_file_as_it_was(int8, tmp_path):
    model, tokenizer, reference, _ = int8
    path = tmp_path / "lm.litertlm"
    path.write_bytes(b"earlier")
    # A min_agreement the int8 bundle of this model does not reach.
    with pytest.raises(GenerationVerificationError, match=(
            r"agrees with Keras' on 11/12 steps .* below min_agreement=1.0 .*"
            r"Nothing was written to")):
        export_litertlm(model, path, max_length=MAX_LENGTH, prefill_lengths=PREFILL,
                        tokenizer=tokenizer, prompts=PROMPTS,
                        max_new_tokens=NEW_TOKENS, quantize="dynamic",
                        min_agreement=1.0, reference=reference)
    assert path.read_bytes() == b"earlier"
    assert os.listdir(tmp_path) == ["lm.litertlm"]


def test_a_tokenizer_of_another_vocabulary_is_refused(models, tmp_path):
    other = _tokenizer_folder(tmp_path, 256)
    with pytest.raises(ValueError, match=r"does not match the model: its ids "
                       r"go up to 255 \(256 tokens\).*vocabulary of 64"):
        export_litertlm(models["llama"], tmp_path / "m.litertlm",
                        max_length=MAX_LENGTH, tokenizer=other)


def test_a_missing_tokenizer_is_refused(models, tmp_path):
    with pytest.raises(ValueError, match=r"tokenizer=None. Pass tokenizer="):
        export_litertlm(models["llama"], tmp_path / "m.litertlm",
                        max_length=MAX_LENGTH)


def test_no_chat_template_says_how_to_pass_one(models, tmp_path):
    bare = _tokenizer_folder(tmp_path, tiny_lms.VOCAB, config=False)
    with pytest.raises(ValueError, match=r"chat_template=None and no "
                       r"`chat_template` in tokenizer_config.json.*Pass "
                       r"chat_template="):
        export_litertlm(models["llama"], tmp_path / "m.litertlm",
                        max_length=MAX_LENGTH, tokenizer=bare, start_token_id=1,
                        stop_token_ids=[2])


def test_a_prompt_longer_than_the_context_is_refused(models, tokenizer, tmp_path):
    prompt = " ".join(["w7"] * 30)
    with pytest.raises(PromptTooLongError, match=r"is 31 tokens with the start "
                       r"token; with max_new_tokens=6 it needs 37 positions, "
                       r"more than the context \(max_length=32\)"):
        export_litertlm(models["llama"], tmp_path / "m.litertlm",
                        max_length=MAX_LENGTH, tokenizer=tokenizer,
                        prompts=[prompt], max_new_tokens=NEW_TOKENS)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("options,message", [
    ({"quantize": "int4"}, r"Unrecognized quantize='int4' for generation "
                           r"export. Supported modes are: \[None, 'dynamic'\]"),
    ({"prefill_lengths": (8, 64)}, r"cache \(max_length=32\) is shorter than "
                                   r"the longest prefill length \(64\).*"
                                   r"Received: prefill_lengths=\(8, 64\)"),
    ({"stop_token_ids": [99]}, r"ids in \[0, 64\).*stop_token_ids=\[99\]"),
    ({"prompts": "w5 w6"}, r"non-empty list of non-empty strings"),
])
def test_bad_arguments_are_refused(models, tokenizer, tmp_path, options, message):
    with pytest.raises(ValueError, match=message):
        export_litertlm(models["llama"], tmp_path / "m.litertlm",
                        max_length=MAX_LENGTH, tokenizer=tokenizer, **options)
