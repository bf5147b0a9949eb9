"""`export_onnx_genai`: tiny keras-hub causal LMs as ONNX Runtime GenAI
folders, run by the real `onnxruntime_genai` and compared with Keras.

Each folder is built once per module. GenAI reads `tokenizer.json` as
byte-level (or SentencePiece-style) BPE only, so the tiny tokenizer here is
a byte-level BPE of 64 ids (`write_letter_tokenizer`); the word-level one
of `tiny_lms` serves as the tokenizer GenAI cannot read.
"""

import filecmp
import functools
import json
import os
import shutil
import string

import numpy as np
import pytest

from keras_lowrank.generation.generation_verification import GenerationVerificationError
from keras_lowrank.generation.generator_loop import PromptTooLongError
from keras_lowrank.generation.keras_reference import ReferenceGeneration
from keras_lowrank.generation.onnx_genai_check import GenAIGenerator
from keras_lowrank.generation.onnx_genai_check import GenAITokenizer
from keras_lowrank.generation.onnx_genai_export import export_onnx_genai
from tests.generation import tiny_lms

MAX_LENGTH = 32
NEW_TOKENS = 8
START, STOP = 1, 2
PROMPTS = ["hello there", "The capital of France is"]
# Like SmolLM2's: one turn per message, and the assistant's turn opened.
CHAT_TEMPLATE = (
    "{% for m in messages %}<bos>{{ m['role'] }} {{ m['content'] }}<eos>"
    "{% endfor %}{% if add_generation_prompt %}<bos>assistant {% endif %}")


def write_letter_tokenizer(folder, chat_template=CHAT_TEMPLATE):
    """A byte-level BPE tokenizer.json of 64 ids (`<pad> <bos> <eos>`, then
    `Ġ` (space) and 60 ASCII letters) and its tokenizer_config.json."""
    from tokenizers import Tokenizer
    from tokenizers import decoders
    from tokenizers import models
    from tokenizers import pre_tokenizers

    os.makedirs(folder, exist_ok=True)
    symbols = tiny_lms.SPECIAL + ["Ġ"] + list(string.ascii_letters[:60])
    vocab = {symbol: i for i, symbol in enumerate(symbols)}
    tokenizer = Tokenizer(models.BPE(vocab, [], unk_token="<pad>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(tiny_lms.SPECIAL)
    path = os.path.join(folder, "tokenizer.json")
    tokenizer.save(path)
    config = {"tokenizer_class": "GPT2Tokenizer", "bos_token": "<bos>",
              "eos_token": "<eos>", "pad_token": "<pad>"}
    if chat_template is not None:
        config["chat_template"] = chat_template
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as file:
        json.dump(config, file)
    return path


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return write_letter_tokenizer(str(tmp_path_factory.mktemp("letters")))


@pytest.fixture(scope="module")
def export(tiny_models, tiny_references, tokenizer, tmp_path_factory):
    """`export(name)`: (report, folder), each model built once, checked
    against the model's shared Keras reference (`tiny_references`)."""
    root = tmp_path_factory.mktemp("genai")

    @functools.cache
    def get(name):
        folder = str(root / name)
        model = tiny_models[name]
        return export_onnx_genai(
            model, folder, max_length=MAX_LENGTH,
            tokenizer=tokenizer, start_token_id=START, prompts=PROMPTS,
            max_new_tokens=NEW_TOKENS,
            reference=tiny_references(model, MAX_LENGTH)), folder

    return get


def _keras_ids(tokenizer, text):
    from tokenizers import Tokenizer

    return [START] + Tokenizer.from_file(tokenizer).encode(text).ids


def _until_stop(tokens):
    return tokens[:tokens.index(STOP) + 1] if STOP in tokens else tokens


# === The folder runs in GenAI and generates Keras' tokens ===

def test_llama_folder_generates_keras_greedy_tokens(export, tiny_models,
                                                   tiny_references, tokenizer):
    report, folder = export("llama")
    generator = GenAIGenerator(folder)
    reference = tiny_references(tiny_models["llama"], MAX_LENGTH)
    for text in PROMPTS:
        ids = _keras_ids(tokenizer, text)
        new_tokens = min(NEW_TOKENS, MAX_LENGTH - len(ids))
        keras_tokens = reference.tokens(ids, new_tokens)
        genai_tokens = generator.greedy(ids, new_tokens).tokens
        assert list(genai_tokens) == _until_stop(list(keras_tokens))
        assert len(genai_tokens) >= 1
    assert report.verified
    assert report.tokens_compared >= len(PROMPTS)
    assert report.tokens_matching == report.tokens_compared
    assert report.prompts_matching == len(PROMPTS)
    assert report.prompt_lengths == tuple(len(_keras_ids(tokenizer, t)) for t in PROMPTS)
    assert report.time_to_first_token_ms > 0


@pytest.mark.parametrize("name", ["gemma", "gpt2"])
def test_gemma_and_gpt2_folders_generate_keras_greedy_tokens(export, name):
    report, _ = export(name)
    assert report.tokens_compared >= len(PROMPTS)
    assert report.tokens_matching == report.tokens_compared
    assert report.genai_type == {"gemma": "gemma", "gpt2": "decoder"}[name]


def test_genai_tokenizer_gives_the_tokenizers_ids_without_the_start_token(
        export, tokenizer):
    report, folder = export("llama")
    genai = GenAITokenizer(folder)
    for text in PROMPTS:
        assert [START] + genai.encode(text) == _keras_ids(tokenizer, text)
    assert report.genai_adds_start_token is False
    assert "prepend 1" in str(report)
    assert genai.chat_prompt("hello") == "<bos>user hello<eos><bos>assistant "


def test_folder_holds_genai_files_and_config(export, tokenizer):
    report, folder = export("llama")
    assert sorted(os.listdir(folder)) == sorted(
        ["model.onnx", "genai_config.json", "tokenizer.json", "tokenizer_config.json"])
    assert report.files[0] == "model.onnx"
    assert report.size_bytes == sum(
        os.path.getsize(os.path.join(folder, n)) for n in os.listdir(folder))
    source = os.path.dirname(tokenizer)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        assert filecmp.cmp(os.path.join(source, name), os.path.join(folder, name),
                           shallow=False)
    config = tiny_lms.read_json(os.path.join(folder, "genai_config.json"))
    model, search = config["model"], config["search"]
    assert (model["bos_token_id"], model["eos_token_id"], model["pad_token_id"]) == (
        START, [STOP], 0)
    assert (model["context_length"], model["vocab_size"], model["type"]) == (
        MAX_LENGTH, tiny_lms.VOCAB, "llama")
    decoder = model["decoder"]
    assert decoder["filename"] == "model.onnx"
    assert (decoder["num_hidden_layers"], decoder["num_key_value_heads"],
            decoder["num_attention_heads"], decoder["head_size"],
            decoder["hidden_size"]) == (2, 2, 4, 4, 16)
    assert decoder["inputs"]["past_key_names"] == "past_key_values.%d.key"
    assert decoder["outputs"]["present_value_names"] == "present.%d.value"
    assert search["do_sample"] is False and search["top_k"] == 1
    assert search["max_length"] == MAX_LENGTH
    assert search["past_present_share_buffer"] is False


def test_model_has_genai_inputs_and_outputs(export):
    import onnx

    _, folder = export("llama")
    graph = onnx.load(os.path.join(folder, "model.onnx")).graph

    def shapes(values):
        return {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
                for v in values}

    inputs, outputs = shapes(graph.input), shapes(graph.output)
    assert inputs == {
        "input_ids": ["batch_size", "sequence_length"],
        "attention_mask": ["batch_size", "total_sequence_length"],
        "position_ids": ["batch_size", "sequence_length"],
        **{f"past_key_values.{i}.{kv}": ["batch_size", 2, "past_sequence_length", 4]
           for i in range(2) for kv in ("key", "value")},
    }
    assert outputs == {
        "logits": ["batch_size", "sequence_length", tiny_lms.VOCAB],
        **{f"present.{i}.{kv}": ["batch_size", 2, "total_sequence_length", 4]
           for i in range(2) for kv in ("key", "value")},
    }
    assert all(v.type.tensor_type.elem_type == onnx.TensorProto.INT64
               for v in graph.input[:3])


# === Written atomically ===

def test_failed_check_keeps_the_earlier_folder_and_leaves_nothing_else(
        export, tiny_models, tokenizer, tmp_path):
    _, built = export("llama")
    folder = str(tmp_path / "lm")
    shutil.copytree(built, folder)
    before = {n: open(os.path.join(folder, n), "rb").read() for n in os.listdir(folder)}

    def wrong(prompt_ids, max_new_tokens):  # never what the model says
        tokens = tuple([tiny_lms.VOCAB - 1] * max_new_tokens)
        return ReferenceGeneration(tokens, tuple([1.0] * max_new_tokens))

    with pytest.raises(GenerationVerificationError,
                       match=r"differs from Keras.*Nothing was written at"):
        export_onnx_genai(tiny_models["llama"], folder, max_length=MAX_LENGTH,
                          tokenizer=tokenizer, start_token_id=START,
                          prompts=PROMPTS[:1], max_new_tokens=2, reference=wrong)
    assert os.listdir(tmp_path) == ["lm"]
    after = {n: open(os.path.join(folder, n), "rb").read() for n in os.listdir(folder)}
    assert after == before


# === Bad input: one clear error each, nothing written ===

def _export(model, folder, **options):
    options = {"max_length": MAX_LENGTH, "start_token_id": START,
               "prompts": PROMPTS, **options}
    return export_onnx_genai(model, str(folder), **options)


def test_gemma2_is_refused(tokenizer, tmp_path):
    import keras_hub

    backbone = keras_hub.models.GemmaBackbone(
        vocabulary_size=tiny_lms.VOCAB, num_layers=2, num_query_heads=2,
        num_key_value_heads=1, hidden_dim=8, intermediate_dim=16, head_dim=4,
        use_sliding_window_attention=True, sliding_window_size=8,
        final_logit_soft_cap=30.0)
    gemma2 = keras_hub.models.GemmaCausalLM(backbone=backbone, preprocessor=None)
    with pytest.raises(TypeError, match=r"Gemma \(1\) folders.*type `gemma2`"):
        _export(gemma2, tmp_path / "out", tokenizer=tokenizer)
    assert os.listdir(tmp_path) == []


def test_tokenizer_not_matching_the_vocabulary(tiny_models, tmp_path):
    path = tiny_lms.write_word_tokenizer(tmp_path / "tokenizer.json", size=100)
    with pytest.raises(ValueError, match=r"does not match the model: its ids go "
                       r"up to 99 \(100 tokens\).*vocabulary of 64"):
        _export(tiny_models["llama"], tmp_path / "out", tokenizer=path)
    assert not os.path.exists(tmp_path / "out")


def test_tokenizer_genai_cannot_read(tiny_models, tmp_path):
    path = tiny_lms.write_word_tokenizer(tmp_path / "tokenizer.json")  # word level
    with open(tmp_path / "tokenizer_config.json", "w") as file:
        json.dump({"chat_template": CHAT_TEMPLATE, "eos_token": "<eos>"}, file)
    with pytest.raises(ValueError, match=r"cannot read the tokenizer files.*"
                       r"word-level.*Nothing was written at"):
        _export(tiny_models["llama"], tmp_path / "out", tokenizer=path,
                prompts=["w5 w9"])
    assert sorted(os.listdir(tmp_path)) == ["tokenizer.json", "tokenizer_config.json"]


def test_missing_tokenizer_config(tiny_models, tokenizer, tmp_path):
    lone = tmp_path / "lone"
    lone.mkdir()
    shutil.copy(tokenizer, lone / "tokenizer.json")
    with pytest.raises(FileNotFoundError, match=r"needs a tokenizer_config.json "
                       r"\(it holds the chat template\).*Pass tokenizer_config="):
        _export(tiny_models["llama"], tmp_path / "out",
                tokenizer=str(lone / "tokenizer.json"))
    assert not os.path.exists(tmp_path / "out")


def test_tokenizer_config_without_chat_template(tiny_models, tmp_path):
    path = write_letter_tokenizer(str(tmp_path / "plain"), chat_template=None)
    with pytest.raises(ValueError, match=r"has no chat template.*Received: "
                       r"chat_template=None"):
        _export(tiny_models["llama"], tmp_path / "out", tokenizer=path)
    assert not os.path.exists(tmp_path / "out")


def test_prompt_longer_than_the_context(tiny_models, tokenizer, tmp_path):
    with pytest.raises(PromptTooLongError, match=r"is 41 tokens \(start token "
                       r"included\).*max_length=32: at most 31 tokens"):
        _export(tiny_models["llama"], tmp_path / "out", tokenizer=tokenizer,
                prompts=["a" * 40])
    assert not os.path.exists(tmp_path / "out")


def test_missing_tokenizer(tiny_models, tmp_path):
    with pytest.raises(ValueError, match=r"needs `tokenizer`.*Received: tokenizer=None"):
        _export(tiny_models["llama"], tmp_path / "out")


def test_folder_holding_other_files_is_refused(tiny_models, tokenizer, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"existing folder holding other files "
                       r"\(notes.txt\)"):
        _export(tiny_models["llama"], tmp_path, tokenizer=tokenizer)
    assert os.listdir(tmp_path) == ["notes.txt"]


def test_report_is_frozen_and_prints_its_numbers(export):
    report, folder = export("llama")
    with pytest.raises(AttributeError):
        report.size_bytes = 0
    text = str(report)
    assert folder in text
    assert f"{report.tokens_matching}/{report.tokens_compared}" in text
    assert "tokens/s" in text and "time to first token" in text
    assert np.isfinite(report.decode_tokens_per_s)
