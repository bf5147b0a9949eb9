"""`metadata="text_classifier"`: raw text in MediaPipe's TextClassifier.

The tiny keras-hub BERT classifier of `text_models` (its own 51-token
uncased vocabulary, sequence length 16) is exported and run in MediaPipe
Tasks' `TextClassifier`, the C++ task of the Android, iOS and Web SDKs, on
raw strings: casing, punctuation, an unknown word, an accented word and a
text longer than 16 tokens. Every bad input fails in one line with nothing
written.
"""

import json
import os

import keras
import keras_hub
import numpy as np
import pytest

import keras_lowrank as klr
from keras_lowrank._compat import mediapipe as mediapipe_compat
from keras_lowrank.exporters import ExportVerificationError
from keras_lowrank.exporters.mediapipe_text import MediaPipeClassifier
from keras_lowrank.exporters.mediapipe_text import mediapipe_token_ids
from keras_lowrank.exporters.mediapipe_text import read_labels
from keras_lowrank.exporters.text_classifier import text_classifier_spec
from keras_lowrank.exporters.text_inputs import tokenize
from tests.exporters.text_models import LABELS
from tests.exporters.text_models import SEQUENCE_LENGTH
from tests.exporters.text_models import TEXTS
from tests.exporters.text_models import albert_classifier
from tests.exporters.text_models import text_classifier
from tests.exporters.text_models import toy_data

pytest.importorskip("mediapipe")


@pytest.fixture(scope="module")
def classifier(text_model):
    return text_model


def _wide(word):
    """`word` in fullwidth letters: keras-hub's NFKC folds them to ASCII,
    MediaPipe's tokenizer gives [UNK] (`docs/export.md`)."""
    return "".join(chr(ord(c) + 0xFEE0) for c in word)


# Keras reads "dull" (negative); MediaPipe an unknown word, and says positive.
MISREAD = "the film was " + _wide("dull")


def _with_misread(count):
    texts, labels = toy_data(count, seed=11)
    return texts + [MISREAD], np.append(labels, 0)


@pytest.fixture(scope="module")
def exported(classifier, tmp_path_factory):
    """The float artifact, checked on the sample texts and on 200 eval
    texts of which MediaPipe misreads one (0.995: the least it may reach),
    so that one export serves every test of the float artifact."""
    path = tmp_path_factory.mktemp("text_classifier") / "classifier.tflite"
    report = klr.export(
        classifier, path, "tflite", metadata="text_classifier",
        labels=list(LABELS), sample_inputs=TEXTS, eval_data=_with_misread(199),
    )
    return path, report


def _keras_scores(model, texts):
    logits = np.asarray(model.predict(texts, verbose=0), dtype="float64")
    scores = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return scores / scores.sum(axis=-1, keepdims=True)


def test_mediapipe_classifies_raw_text_like_keras(classifier, exported):
    path, report = exported
    expected = _keras_scores(classifier, TEXTS)
    # The toy model is trained: its scores differ from text to text.
    assert np.ptp(expected[:, 1]) > 0.5
    with MediaPipeClassifier(path) as mediapipe:
        scores = mediapipe(TEXTS)
        categories = mediapipe.classify("The movie was great!")
    assert np.max(np.abs(scores - expected)) < 1e-5
    assert np.array_equal(scores.argmax(-1), expected.argmax(-1))
    assert {name for name, _ in categories.values()} == set(LABELS)
    assert report.verified and report.metadata == "text_classifier"
    assert report.label_agreement == 1.0 and report.texts_checked == len(TEXTS)
    assert report.max_score_diff < 1e-5 and report.tolerance == 1e-4
    assert report.token_agreement == 1.0
    assert report.runtime.startswith("mediapipe ")


def test_the_artifact_holds_what_the_task_expects(exported):
    path, report = exported
    assert read_labels(path) == LABELS
    assert report.labels == LABELS
    # int32 ids, mask, segment ids of one fixed length, batch 1; scores out.
    assert report.input_names == ("token_ids", "padding_mask", "segment_ids")
    assert report.input_shapes == {
        name: [1, SEQUENCE_LENGTH]
        for name in ("padding_mask", "segment_ids", "token_ids")
    }
    metadata = mediapipe_compat.metadata_module()
    displayer = metadata.MetadataDisplayer.with_model_file(str(path))
    described = json.loads(displayer.get_metadata_json())
    (subgraph,) = described["subgraph_metadata"]
    assert [t["name"] for t in subgraph["input_tensor_metadata"]] == [
        "ids", "mask", "segment_ids"
    ]
    (unit,) = subgraph["input_process_units"]
    assert unit["options_type"] == "BertTokenizerOptions"
    assert described["min_parser_version"] == "1.1.0"
    vocabulary = displayer.get_associated_file_buffer("vocab.txt").decode()
    assert vocabulary.split("\n")[:4] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    assert "SOFTMAX" in report.ops and not any(op.startswith("Flex") for op in report.ops)


def test_mediapipe_tokenizes_like_keras_hub(classifier):
    spec = text_classifier_spec(classifier)
    texts = TEXTS + ["UPPER lower MiXeD", "?!,.", "", "  spaced   out  "]
    ours = tokenize(classifier, texts)["token_ids"]
    theirs = mediapipe_token_ids(spec.tokenizer, texts, SEQUENCE_LENGTH)
    assert np.array_equal(ours, theirs)
    # The long text is truncated alike: [CLS] + 14 pieces + [SEP].
    long = TEXTS.index(max(TEXTS, key=len))
    assert theirs[long, -1] == 3 and np.all(theirs[long] != 0)


def test_latency_at_median_and_maximum_length(exported):
    _, report = exported
    timings = report.latency_by_length
    assert set(timings) == {"median", "max"}
    assert timings["max"]["tokens"] == SEQUENCE_LENGTH  # the long text
    assert 2 < timings["median"]["tokens"] < SEQUENCE_LENGTH
    assert all(t["ms"] > 0 for t in timings.values())


def test_default_labels_come_from_the_model_or_are_numbers(classifier, tmp_path):
    assert text_classifier_spec(classifier).labels == ("0", "1")
    classifier.label_names = ["bad", "good"]
    try:
        assert text_classifier_spec(classifier).labels == ("bad", "good")
    finally:
        del classifier.label_names


def test_eval_data_accuracy_is_measured_in_mediapipe(classifier, tmp_path):
    texts, labels = toy_data(48, seed=11)
    report = klr.export(
        classifier, tmp_path / "c.tflite", "tflite", metadata="text_classifier",
        eval_data=(texts, labels),
    )
    expected = float(np.mean(_keras_scores(classifier, texts).argmax(-1) == labels))
    assert report.keras_accuracy == pytest.approx(expected)
    assert report.accuracy == pytest.approx(expected)
    assert report.eval_examples == 48 and report.texts_checked == 48
    # Every eval text, each classified once: every label as Keras'.
    assert report.eval_label_agreement == 1.0 and report.eval_labels_equal == 48
    assert report.eval_max_score_diff < 1e-5  # measured 8e-8
    assert "eval texts:    labels equal Keras' on 48/48 (1.0000)" in str(report)


def test_a_float_artifact_needs_keras_labels_on_99_5_percent_of_eval_texts(
        classifier, exported, tmp_path):
    # 199 of 200 texts alike: 0.995, the least a float32 artifact may reach.
    report = exported[1]
    assert report.eval_label_agreement == 0.995 and report.eval_labels_equal == 199
    assert report.keras_accuracy == 1.0 and report.accuracy == 0.995
    assert report.eval_examples == 200
    # 150 of 151: refused, though accuracy is within 1.0 point (-0.66).
    with pytest.raises(ExportVerificationError, match=(
            r"MediaPipe's TextClassifier \(quantize=None\) gives Keras' label "
            r"on 150 of the 151 eval_data texts \(label agreement 0\.9934, at "
            r"least 0\.995 needed\); labels differ on \['the film was "
            + _wide("dull") + r"'\]\. The artifact was removed")):
        klr.export(
            classifier, tmp_path / "d.tflite", "tflite",
            metadata="text_classifier", sample_inputs=TEXTS,
            eval_data=_with_misread(150),
        )
    assert os.listdir(tmp_path) == []


@pytest.fixture(scope="module")
def dynamic_range(classifier, tmp_path_factory):
    """The dynamic-range artifact's report: two tests read the one artifact
    (its sample texts are run in MediaPipe apart from the eval texts)."""
    path = tmp_path_factory.mktemp("dynamic") / "c.tflite"
    return klr.export(
        classifier, path, "tflite", metadata="text_classifier",
        quantize="dynamic", sample_inputs=TEXTS, eval_data=_with_misread(150),
    )


def test_dynamic_range_artifact_runs_in_mediapipe(exported, dynamic_range):
    report = dynamic_range
    # Measured: label agreement 1.0, max score diff about 3e-3.
    assert report.texts_checked == len(TEXTS)
    assert report.label_agreement == 1.0 and report.max_score_diff < 0.05
    assert report.size_bytes < exported[1].size_bytes


def test_a_quantized_artifact_is_judged_on_accuracy_not_agreement(dynamic_range):
    report = dynamic_range
    # The misread text alone differs: below 0.995, within 1.0 point.
    assert report.eval_labels_equal == 150 and report.eval_examples == 151
    assert report.eval_label_agreement == pytest.approx(150 / 151)
    assert report.accuracy == pytest.approx(report.keras_accuracy - 1 / 151)
    assert 1e-4 < report.eval_max_score_diff < 1.0


def test_a_sentencepiece_classifier_runs_in_mediapipe(tmp_path):
    """ALBERT: a SentencePiece model (uncased) with [CLS]/[SEP] pieces."""
    model = albert_classifier()
    report = klr.export(
        model, tmp_path / "albert.tflite", "tflite", metadata="text_classifier",
        sample_inputs=TEXTS,
    )
    described = json.loads(
        mediapipe_compat.metadata_module().MetadataDisplayer.with_model_file(
            str(tmp_path / "albert.tflite")).get_metadata_json()
    )
    (unit,) = described["subgraph_metadata"][0]["input_process_units"]
    assert unit["options_type"] == "SentencePieceTokenizerOptions"
    # Measured: max score diff 5e-8, every token id alike.
    assert report.label_agreement == 1.0 and report.max_score_diff < 1e-5
    assert report.token_agreement == 1.0


# === Bad input: one line naming what was received, nothing written ===


def _fails(tmp_path, match, model, **kwargs):
    kwargs.setdefault("metadata", "text_classifier")
    with pytest.raises(ValueError, match=match) as error:
        klr.export(model, tmp_path / "c.tflite", "tflite", **kwargs)
    assert "\n" not in str(error.value)
    assert os.listdir(tmp_path) == []


def test_a_model_without_preprocessor_is_refused(classifier, tmp_path):
    model = keras_hub.models.BertTextClassifier(
        classifier.backbone, num_classes=2, preprocessor=None
    )
    _fails(tmp_path, r"model\.preprocessor is None\. Supported: a classifier "
           r"with its preprocessor .* Received: BertTextClassifier without", model)


def test_a_model_that_is_not_a_classifier_is_refused(tmp_path):
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    _fails(tmp_path, r"needs a keras-hub text classifier .* Received: model of "
           r"type Functional", model)


def test_a_cased_tokenizer_is_refused(tmp_path):
    model = text_classifier(lowercase=False, train=False)
    _fails(tmp_path, r"MediaPipe's WordPiece tokenizer cannot reproduce this "
           r"BertTokenizer: lowercase=False \(MediaPipe lowercases ASCII "
           r"letters; needs True\)", model)


def test_a_byte_pair_tokenizer_is_refused(classifier, tmp_path):
    vocabulary = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "<mask>": 4, "a": 5, "Ġ": 6, "Ġa": 7}
    tokenizer = keras_hub.models.RobertaTokenizer(
        vocabulary=vocabulary, merges=["Ġ a"]
    )
    model = text_classifier(train=False)
    model.preprocessor = keras_hub.models.RobertaTextClassifierPreprocessor(
        tokenizer, sequence_length=SEQUENCE_LENGTH
    )
    _fails(tmp_path, r"can store a tokenizer MediaPipe runs: WordPiece .* or "
           r"SentencePiece with \[CLS\]/\[SEP\]\. Received: RobertaTokenizer", model)


def test_a_cased_sentencepiece_model_is_refused(tmp_path):
    _fails(tmp_path, r"MediaPipe lowercases ASCII letters before SentencePiece, "
           r"but this AlbertTokenizer tells case apart .* Supported: an uncased "
           r"SentencePiece model", albert_classifier(case_folding=False))


def test_more_labels_than_outputs_is_an_error(classifier, tmp_path):
    _fails(tmp_path, r"`labels` names 3 labels, but the model has 2 outputs: at "
           r"most 2 labels\. Received: \['a', 'b', 'c'\]", classifier,
           labels=["a", "b", "c"])


def test_fewer_labels_than_outputs_is_an_error(classifier, tmp_path):
    _fails(tmp_path, r"names 1 labels, but the model has 2 outputs: one label "
           r"per output", classifier, labels=["only"])


def test_metadata_is_a_tflite_option(classifier, tmp_path):
    with pytest.raises(ValueError, match=r"Unrecognized metadata='text_classifier' "
                       r"for format='onnx'\. Supported: metadata in "
                       r"\['text_classifier'\] with format='tflite'"):
        klr.export(classifier, tmp_path / "c.onnx", "onnx", metadata="text_classifier")
    _fails(tmp_path, r"Unrecognized metadata='bert'", classifier, metadata="bert")
    _fails(tmp_path, r"`labels` are stored in the metadata, so they need "
           r"metadata='text_classifier'", classifier, metadata=None, labels=["a", "b"])
    assert os.listdir(tmp_path) == []


def test_eval_data_must_be_texts_and_class_ids(classifier, tmp_path):
    ids = tokenize(classifier, TEXTS[:2])
    _fails(tmp_path, r"runs MediaPipe on raw strings, so `eval_data` must be "
           r"\(texts, labels\)\. Received: inputs of type dict", classifier,
           eval_data=(ids, [0, 1]))
    _fails(tmp_path, r"`eval_data` labels must be integer class ids, one per "
           r"text\. Received: labels of shape \(2,\) and dtype <U3", classifier,
           eval_data=(TEXTS[:2], ["neg", "pos"]))


def test_sample_inputs_must_be_texts(classifier, tmp_path):
    ids = tokenize(classifier, TEXTS[:2])
    _fails(tmp_path, r"checked on raw strings, so `sample_inputs` must be a list "
           r"of texts\. Received: dict", classifier, sample_inputs=ids)
