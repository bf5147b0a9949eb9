"""A tiny Llama-family Hugging Face folder (2 layers, hidden 64, a byte-level
BPE of 263 tokens with SmolLM2's chat template), and small data files."""

import json

import pytest

from keras_lowrank.models.gguf_folder import gguf_to_hf_folder
from tests.generation.tiny_lms import write_tiny_gguf

# SmolLM2-135M-Instruct's template, as its tokenizer_config.json holds it.
CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] "
    "!= 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant "
    "named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_lm")
    write_tiny_gguf(root / "tiny.gguf")
    folder = gguf_to_hf_folder(root / "tiny.gguf", root / "hf")
    path = root / "hf" / "tokenizer_config.json"
    config = json.loads(path.read_text())
    config["chat_template"] = CHAT_TEMPLATE
    config["eos_token"] = "<|im_end|>"
    path.write_text(json.dumps(config))
    return str(folder)


def write_jsonl(path, records):
    with open(path, "w", encoding="utf-8") as file:
        for record in records:
            file.write((record if isinstance(record, str) else json.dumps(record)) + "\n")
    return str(path)


# A toy task the tiny model learns in a few dozen steps: answer "yes" to
# prompts holding "hello", "no" otherwise.
def toy_records(count=32):
    records = []
    for i in range(count):
        word = "hello" if i % 2 else "lol"
        records.append({"prompt": f"{word} {i % 5}",
                        "completion": "yes" if i % 2 else "no"})
    return records
