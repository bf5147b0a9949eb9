import json

import keras_hub
import numpy as np
import pytest
from tokenizers import Tokenizer
from tokenizers import models
from tokenizers import pre_tokenizers

from keras_lowrank.on_device import text_batches as tb

# tests/tiny_models.py's vocabulary, with a few pieces and punctuation.
WORDS = ["a", "great", "awful", "movie", "plot", "the", "was", "good", "cafe",
         "!", ",", ".", "##s", "'", "film", "naive", "?", "-"]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS
TEXTS = ["A great movie!", "The plot was AWFUL, awful.", "Café naïve films?",
         "zebra-crossing's good", "good " * 20, "[CLS] x\tgood ＧＯＯＤ"]
SEQ = 12


def classifier_metadata(lowercase, strip_accents, labels=("negative", "positive")):
    return {
        "task": "classifier", "batch_size": 2, "sequence_length": SEQ, "num_classes": 2,
        "labels": list(labels) if labels else None,
        "inputs": {"token_ids": {"shape": [2, SEQ], "dtype": "int32"},
                   "padding_mask": {"shape": [2, SEQ], "dtype": "bool"},
                   "segment_ids": {"shape": [2, SEQ], "dtype": "int32"}},
        "tokenizer": {"kind": "wordpiece", "file": "vocab.txt", "lowercase": lowercase,
                      "strip_accents": strip_accents, "cls_token": "[CLS]",
                      "sep_token": "[SEP]", "pad_token": "[PAD]", "unk_token": "[UNK]"},
    }


@pytest.mark.parametrize("lowercase,strip_accents",
                         [(True, True), (True, False), (False, False), (False, True)])
def test_wordpiece_ids_equal_keras_hub(lowercase, strip_accents):
    keras_tokenizer = keras_hub.models.BertTokenizer(
        vocabulary=VOCAB, lowercase=lowercase, strip_accents=strip_accents)
    expected = keras_hub.models.BertTextClassifierPreprocessor(
        keras_tokenizer, sequence_length=SEQ)(TEXTS)
    metadata = classifier_metadata(lowercase, strip_accents)
    tokenizer = tb.wordpiece_tokenizer(VOCAB, metadata["tokenizer"])
    rows = tb.classifier_rows(tokenizer, metadata, TEXTS, [0, 1, "positive", 0, 1, 0])
    for name in ("token_ids", "padding_mask", "segment_ids"):
        np.testing.assert_array_equal(rows.inputs[name], np.asarray(expected[name]))
    assert rows.labels.tolist() == [0, 1, 1, 0, 1, 0]
    assert rows.inputs["padding_mask"].dtype == bool


def test_wordpiece_exact_ids_uncased():
    metadata = classifier_metadata(True, True)
    tokenizer = tb.wordpiece_tokenizer(VOCAB, metadata["tokenizer"])
    rows = tb.classifier_rows(tokenizer, metadata, ["Café naïve films?", "good " * 20], [0, 1])
    # [CLS] cafe naive film ##s ? [SEP], then [PAD]; a long text keeps [SEP] last.
    assert rows.inputs["token_ids"].tolist() == [
        [2, 13, 20, 19, 17, 21, 3, 0, 0, 0, 0, 0], [2] + [12] * 10 + [3]]
    assert rows.inputs["padding_mask"].sum(axis=1).tolist() == [7, 12]


def test_default_strip_accents_follows_lowercase():
    info = {**classifier_metadata(True, True)["tokenizer"]}
    del info["strip_accents"]
    assert tb.wordpiece_tokenizer(VOCAB, info).encode("Café").ids == [13]


def test_int32_padding_mask_and_missing_special_token():
    metadata = classifier_metadata(True, True)
    metadata["inputs"]["padding_mask"]["dtype"] = "int32"
    rows = tb.classifier_rows(tb.wordpiece_tokenizer(VOCAB, metadata["tokenizer"]), metadata, ["good"], [1])
    assert rows.inputs["padding_mask"].dtype == np.int32
    assert rows.inputs["padding_mask"].tolist() == [[1, 1, 1] + [0] * 9]
    with pytest.raises(ValueError, match=r"lacks the special token\(s\) \['\[CLS\]'\]"):
        tb.wordpiece_tokenizer([t for t in VOCAB if t != "[CLS]"], metadata["tokenizer"])


# === Causal LM ===

LM_VOCAB = {"<pad>": 0, "<s>": 1, "</s>": 2, "hello": 3, "world": 4, "how": 5,
            "are": 6, "you": 7, "<unk>": 8}


def lm_setup(start=1, end=2, length=6):
    tokenizer = Tokenizer(models.WordLevel(LM_VOCAB, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = Tokenizer.from_str(tokenizer.to_str())  # as read from tokenizer.json
    metadata = {
        "task": "causal_lm", "batch_size": 2, "sequence_length": length, "vocabulary_size": 9,
        "inputs": {"token_ids": {"shape": [2, length], "dtype": "int32"},
                   "padding_mask": {"shape": [2, length], "dtype": "bool"}},
        "tokenizer": {"kind": "tokenizer.json", "file": "tokenizer.json",
                      "start_token_id": start, "end_token_id": end, "pad_token_id": 0},
    }
    return tokenizer, metadata


def test_causal_lm_rows_shift_mask_and_truncate():
    tokenizer, metadata = lm_setup()
    rows = tb.causal_lm_rows(tokenizer, metadata, [
        ("hello world", "how are you"),            # exactly T + 1 tokens
        ("hello", "you"),                          # padded
        ("hello", "how are you how are you"),      # truncated: the end token is cut
    ])
    assert rows.inputs["token_ids"].tolist() == [
        [1, 3, 4, 5, 6, 7], [1, 3, 7, 0, 0, 0], [1, 3, 5, 6, 7, 5]]
    assert rows.labels.tolist() == [
        [3, 4, 5, 6, 7, 2], [3, 7, 2, 0, 0, 0], [3, 5, 6, 7, 5, 6]]
    assert rows.loss_mask.tolist() == [
        [0, 0, 1, 1, 1, 1], [0, 1, 1, 0, 0, 0], [0, 1, 1, 1, 1, 1]]
    assert rows.inputs["padding_mask"].tolist() == [
        [True] * 6, [True] * 3 + [False] * 3, [True] * 6]
    assert rows.loss_mask.dtype == np.float32 and rows.labels.dtype == np.int32


def test_causal_lm_rows_without_start_and_end_tokens():
    tokenizer, metadata = lm_setup(start=None, end=None)
    rows = tb.causal_lm_rows(tokenizer, metadata, [("hello", "world"), ("", "how are")])
    assert rows.inputs["token_ids"].tolist() == [[3, 0, 0, 0, 0, 0], [5, 0, 0, 0, 0, 0]]
    assert rows.labels.tolist() == [[4, 0, 0, 0, 0, 0], [6, 0, 0, 0, 0, 0]]
    assert rows.loss_mask.tolist() == [[1, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0]]


def test_causal_lm_prompt_filling_the_window_is_refused():
    tokenizer, metadata = lm_setup(length=3)
    with pytest.raises(ValueError, match=r"Row 1: its prompt takes 4 of the 4 tokens"):
        tb.causal_lm_rows(tokenizer, metadata, [("hello", "you"), ("hello world how", "you")])


# === Batches ===


def test_classifier_short_batch_is_filled_from_the_epoch_start():
    rows = tb.Rows({"token_ids": np.arange(5)[:, None]}, np.arange(5))
    got = [(b.labels.tolist(), n) for b, n in tb.batches(rows, 2)]
    assert got == [([0, 1], 2), ([2, 3], 2), ([4, 0], 1)]
    tiny = tb.Rows({"token_ids": np.arange(2)[:, None]}, np.arange(2))
    assert [(b.labels.tolist(), n) for b, n in tb.batches(tiny, 5)] == [([0, 1, 0, 1, 0], 2)]


def test_causal_lm_short_batch_is_padded_with_zero_rows():
    tokenizer, metadata = lm_setup()
    rows = tb.causal_lm_rows(tokenizer, metadata, [("hello", "you")] * 3)
    (first, n1), (last, n2) = tb.batches(rows, 2)
    assert (n1, n2) == (2, 1)
    assert last.inputs["token_ids"].tolist() == [[1, 3, 7, 0, 0, 0], [0] * 6]
    assert last.labels.tolist()[1] == [0] * 6 and last.loss_mask.tolist()[1] == [0] * 6
    assert last.inputs["padding_mask"].tolist()[1] == [False] * 6
    assert last.inputs["padding_mask"].dtype == bool


# === Examples ===


def test_read_examples_maps_label_names(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text('{"text": "good", "label": "positive"}\n\n{"text": "awful", "label": 0}\n')
    assert tb.read_examples(str(path), classifier_metadata(True, True)) == [("good", 1), ("awful", 0)]


@pytest.mark.parametrize("line,message", [
    ('{"text": "good", "label": "great"}',
     r"line 2: label 'great' is not an id in \[0, 2\) or one of \['negative', 'positive'\]"),
    ('{"text": "good", "label": 2}', r"line 2: label 2 is not an id in \[0, 2\)"),
    ('{"text": "good", "label": 1.0}', r"line 2: label 1.0 is not"),
    ('{"text": "good"', r"line 2 is not valid JSON"),
    ('{"prompt": "good"}', r"line 2 must be a JSON object with \['text', 'label'\]"),
])
def test_read_examples_bad_line_names_its_number(tmp_path, line, message):
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps({"text": "a", "label": 0}) + "\n" + line + "\n")
    with pytest.raises(ValueError, match=message):
        tb.read_examples(str(path), classifier_metadata(True, True))


def test_read_examples_missing_or_empty_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="No examples file at"):
        tb.read_examples(str(tmp_path / "none.jsonl"), classifier_metadata(True, True))
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(ValueError, match="holds no examples"):
        tb.read_examples(str(tmp_path / "empty.jsonl"), classifier_metadata(True, True))
