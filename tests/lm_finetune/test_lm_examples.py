"""Readers of LM training files, and each bad input as a one-line error
naming the file and the line."""

import pytest

from keras_lowrank.data.data_error import DataError
from keras_lowrank.lm_finetune import LMExample
from keras_lowrank.lm_finetune import read_lm_file
from tests.lm_finetune.conftest import write_jsonl


def test_reads_each_kind_of_jsonl_line(tmp_path):
    path = write_jsonl(tmp_path / "mix.jsonl", [
        {"prompt": "2+2?", "completion": "4"},
        "",
        {"messages": [{"role": "system", "content": "Be brief."},
                      {"role": "user", "content": "Hi"},
                      {"role": "assistant", "content": "Hello"}]},
        {"text": "Once upon a time."},
    ])
    examples = read_lm_file(path)
    assert examples == [
        LMExample((("user", "2+2?"),), "4", f"{path}:1"),
        LMExample((("system", "Be brief."), ("user", "Hi")), "Hello", f"{path}:3"),
        LMExample((), "Once upon a time.", f"{path}:4"),
    ]
    assert [e.is_plain_text for e in examples] == [False, False, True]


def test_text_field_and_txt_paragraphs(tmp_path):
    jsonl = write_jsonl(tmp_path / "t.jsonl", [{"body": "abc"}])
    assert read_lm_file(jsonl, text_field="body")[0].completion == "abc"
    txt = tmp_path / "t.txt"
    txt.write_text("first line\nsecond line\n\n\nthird\n")
    examples = read_lm_file(txt)
    assert [(e.completion, e.source) for e in examples] == [
        ("first line\nsecond line", f"{txt}:1"), ("third", f"{txt}:5")]


@pytest.mark.parametrize("line, message", [
    ({"question": "a", "answer": "b"},
     r"bad.jsonl:2: expected 'prompt' and 'completion', 'messages', or "
     r"'text' fields. Received keys: \['answer', 'question'\]"),
    ({"prompt": "a"}, r"bad.jsonl:2: 'completion' must be a non-empty string"),
    ('{"prompt": "a", "completion": ', r"bad.jsonl:2: invalid JSON \("),
    ("[1, 2]", r"bad.jsonl:2: expected a JSON object. Received: list"),
    ({"messages": [{"role": "user", "content": "a"},
                   {"role": "user", "content": "b"}]},
     r"bad.jsonl:2: the last message is the completion and must be the "
     r"assistant's"),
    ({"messages": [{"role": "user"}, {"role": "assistant", "content": "b"}]},
     r"bad.jsonl:2: messages\[0\] must be an object with 'role'"),
])
def test_bad_line_names_file_and_line(tmp_path, line, message):
    path = write_jsonl(tmp_path / "bad.jsonl",
                       [{"prompt": "fine", "completion": "yes"}, line])
    with pytest.raises(DataError, match=message) as raised:
        read_lm_file(path)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize("name, content", [("e.jsonl", "\n\n"), ("e.txt", "")])
def test_empty_file(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DataError, match=rf"{name}: empty file, no examples"):
        read_lm_file(path)


def test_unknown_suffix_and_missing_file(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("a,b\n")
    with pytest.raises(DataError, match=r"data.csv: unrecognized file type '.csv'"):
        read_lm_file(path)
    with pytest.raises(DataError, match=r"nope.jsonl: no such file"):
        read_lm_file(tmp_path / "nope.jsonl")


def test_the_mr_task_reads_only_the_examples_a_run_keeps():
    import os

    from keras_lowrank.data import fetch
    from keras_lowrank.lm_finetune.lm_data import split_limits
    from keras_lowrank.lm_finetune.lm_finetune_options import LMFinetuneOptions
    from keras_lowrank.lm_finetune.mr_instruction_task import mr_instruction_examples

    cache = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))), ".cache")
    fetch.fetch_mr_polarity(cache)  # a no-op when `make fetch` ran
    options = LMFinetuneOptions(out="unused", max_train_examples=8,
                                max_eval_examples=5, max_validation_examples=64)
    limits = split_limits(options)
    # Validation is capped by the test cap too; None reads a whole split.
    assert limits == {"train": 8, "validation": 5, "test": 5}
    assert split_limits(LMFinetuneOptions(
        out="unused", max_eval_examples=None, max_validation_examples=None)) == {
            "train": None, "validation": None, "test": None}
    whole = mr_instruction_examples(cache, 7)
    kept = mr_instruction_examples(cache, 7, limits)
    assert {k: len(v) for k, v in whole.items()} == {
        "train": 2800, "validation": 400, "test": 800}
    assert kept == {name: whole[name][:limits[name]] for name in whole}
