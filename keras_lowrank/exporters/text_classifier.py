"""`metadata="text_classifier"`: a `.tflite` a phone app feeds raw text.

MediaPipe Tasks' `TextClassifier` (Android, iOS, Web, Python) tokenizes a
string with the tokenizer stored in the model's metadata, feeds three int32
tensors of one fixed length (`ids`, `mask`, `segment_ids`, batch 1), and
reads class scores with the label names of the metadata. This module checks
that a keras-hub classifier can be shipped that way (`text_classifier_spec`)
and writes it (`write_text_classifier`): the merged model behind a
fixed-length signature with a softmax, converted to LiteRT, with the
tokenizer and labels added by MediaPipe's own metadata writer.

What MediaPipe's BERT preprocessor does, and so what it can represent
(`mediapipe/calculators/tensor/bert_preprocessor_calculator.cc`): lowercase
ASCII letters (only ASCII), split on whitespace, punctuation and CJK
characters, WordPiece with `##` suffixes and `[UNK]` (or SentencePiece),
keep the first `length - 2` pieces, add `[CLS]` and `[SEP]`, pad ids with 0.
A keras-hub tokenizer that differs in a way text hits often is refused
here; the rest (Unicode case folding, NFKC) is measured by
`token_agreement` (see `docs/export.md`).
"""

import dataclasses

import numpy as np

from keras_lowrank.exporters.mediapipe_text import TokenizerFiles
from keras_lowrank.exporters.mediapipe_text import populate_metadata
from keras_lowrank.exporters.saved_model import SIGNATURE_KEY
from keras_lowrank.exporters.saved_model import write_saved_model
from keras_lowrank.exporters.session import shared_saved_model
from keras_lowrank.exporters.signature import input_signature
from keras_lowrank.exporters.signature import keras_outputs
from keras_lowrank.exporters.tflite import convert_saved_model
from keras_lowrank.exporters.tflite import tracing_for
from keras_lowrank.exporters.tflite import tracing_name
from keras_lowrank.utils.optional import tensorflow as tf

METADATA_KINDS = ("text_classifier",)
# The artifact's inputs, in the order MediaPipe's BERT preprocessor fills
# them (ids, mask, segment ids), named after keras-hub's inputs.
INPUT_NAMES = ("token_ids", "padding_mask", "segment_ids")
OUTPUT_NAME = "scores"
# Start, end and unknown tokens MediaPipe's BERT preprocessor uses.
START_TOKEN, END_TOKEN, UNKNOWN_TOKEN = "[CLS]", "[SEP]", "[UNK]"
_WORDPIECE_OPTIONS = {
    # option: (value MediaPipe's tokenizer behaves as, why it matters)
    "lowercase": (True, "MediaPipe lowercases ASCII letters"),
    "strip_accents": (False, "MediaPipe keeps accents"),
    "split": (True, "MediaPipe splits on whitespace and punctuation"),
    "split_on_cjk": (True, "MediaPipe splits CJK characters"),
    "suffix_indicator": ("##", "MediaPipe marks word pieces with '##'"),
    "oov_token": (UNKNOWN_TOKEN, "MediaPipe's unknown token is '[UNK]'"),
    "special_tokens_in_strings": (False, "MediaPipe splits '[CLS]' in text"),
}
_CASE_PROBE = "The Movie WAS Great"


@dataclasses.dataclass(frozen=True)
class TextClassifierSpec:
    """What the artifact holds besides the weights.

    Args:
        tokenizer: `TokenizerFiles`. The vocabulary or SentencePiece model.
        sequence_length: int. The fixed input length: the preprocessor's.
        labels: tuple of str. One name per class, in class order.
        model_inputs: tuple of str. The inputs the model takes, among
            `INPUT_NAMES` (DistilBERT-like models take no segment ids).
        softmax: bool. Whether the artifact applies a softmax (the model
            gives logits) or the model already ends with one.
    """

    tokenizer: TokenizerFiles
    sequence_length: int
    labels: tuple
    model_inputs: tuple
    softmax: bool = True

    @property
    def num_classes(self):
        return len(self.labels)


def text_classifier_spec(model, labels=None) -> TextClassifierSpec:
    """Checks that `model` can ship as a MediaPipe text classifier.

    Args:
        model: a keras-hub `TextClassifier` with its preprocessor.
        labels: optional label names, one per class. Default: the model's
            `label_names` attribute if it has one, else `"0"`, `"1"`, ...

    Raises:
        ValueError: one line naming what was received and what is
            supported, for a model that is not a keras-hub text classifier,
            one without a preprocessor, a tokenizer MediaPipe cannot
            represent, or labels that do not name each class once.
    """
    import keras_hub

    if not isinstance(model, keras_hub.models.TextClassifier):
        raise ValueError(
            "metadata='text_classifier' needs a keras-hub text classifier "
            "(a keras_hub.models.TextClassifier such as BertTextClassifier). "
            f"Received: model of type {type(model).__name__}"
        )
    preprocessor = getattr(model, "preprocessor", None)
    if preprocessor is None:
        raise ValueError(
            "metadata='text_classifier' stores the model's tokenizer, read "
            "from its preprocessor, but model.preprocessor is None. Supported: "
            "a classifier with its preprocessor (e.g. BertTextClassifier"
            ".from_preset(...) without preprocessor=None). Received: "
            f"{type(model).__name__} without a preprocessor"
        )
    num_classes = _num_classes(model)
    model_inputs = _model_inputs(model)
    length = getattr(preprocessor, "sequence_length", None)
    if not isinstance(length, int) or length < 3:
        raise ValueError(
            "metadata='text_classifier' needs the preprocessor's fixed "
            "sequence_length (at least 3: [CLS], a token, [SEP]). Received: "
            f"sequence_length={length!r} on {type(preprocessor).__name__}"
        )
    tokenizer = _tokenizer_files(preprocessor)
    return TextClassifierSpec(
        tokenizer=tokenizer,
        sequence_length=length,
        labels=_labels(model, labels, num_classes),
        model_inputs=model_inputs,
        softmax=_needs_softmax(model),
    )


def serving_inputs(spec, batch_size=1):
    """The artifact's fixed input specs, `{name: tf.TensorSpec}`."""
    shape = (batch_size, spec.sequence_length)
    return {name: tf.TensorSpec(shape, tf.int32, name=name) for name in INPUT_NAMES}


def scores_function(model, spec, batch_size=1):
    """`{token_ids, padding_mask, segment_ids} -> {"scores": softmax}`."""

    @tf.function(input_signature=[serving_inputs(spec, batch_size)], autograph=False)
    def serve(inputs):
        with tf.name_scope("serving"):  # see signature.serving_function
            outputs = model(
                {name: inputs[name] for name in spec.model_inputs}, training=False
            )
            if spec.softmax:
                outputs = tf.nn.softmax(outputs, axis=-1)
            return {OUTPUT_NAME: outputs}

    return serve


def keras_scores(model, spec, flat):
    """Keras' class scores on token inputs `{name: array}` (any batch).

    The model runs through `signature.keras_outputs`: within an
    `export_session`, once per model and input values.
    """
    inputs = {name: flat[name] for name in spec.model_inputs}
    (outputs,) = keras_outputs(model, input_signature(model), inputs).values()
    outputs = np.asarray(outputs, dtype="float64")
    if spec.softmax:
        outputs = np.exp(outputs - outputs.max(axis=-1, keepdims=True))
        outputs = outputs / outputs.sum(axis=-1, keepdims=True)
    return outputs


def write_text_classifier(model, spec, path, *, quantize=None,
                          calibration_rows=None):
    """Writes the MediaPipe-ready `.tflite` at `path`.

    Args:
        model: the merged Keras classifier.
        spec: its `TextClassifierSpec`.
        path: the file to write.
        quantize: a TFLite quantize mode.
        calibration_rows: for calibrated modes, a list of `{name: (1,
            length) int32}` rows.
    """
    def write(saved_model):
        with tracing_for(quantize):
            serve = scores_function(model, spec)
            write_saved_model(model, serving_inputs(spec), saved_model, serve=serve,
                              endpoint=False)  # the converter reads the signature

    key = ("text_classifier", spec.sequence_length, spec.model_inputs, spec.softmax,
           tracing_name(quantize))
    with shared_saved_model(key, model, write) as saved_model:
        representative = None
        if calibration_rows is not None:
            representative = lambda: iter(calibration_rows)  # noqa: E731
        flatbuffer = convert_saved_model(
            saved_model, quantize=quantize, representative_data=representative
        )
    names = tuple(f"{SIGNATURE_KEY}_{name}:0" for name in INPUT_NAMES)
    flatbuffer = _with_input_order(flatbuffer, names)
    artifact = populate_metadata(flatbuffer, spec.tokenizer, spec.labels, names)
    with open(path, "wb") as file:
        file.write(artifact)


def _with_input_order(flatbuffer, names):
    """The flatbuffer with its subgraph inputs in the order of `names`.

    The converter orders a signature's inputs its own way; the task's order
    is ids, mask, segment ids (as Model Maker's BERT classifiers). Only the
    subgraph's input index vector is permuted, in place: tensors, ops and
    the signature (which names its tensors) are untouched.
    """
    from mediapipe.tasks.metadata import schema_py_generated as schema

    buffer = bytearray(flatbuffer)
    subgraph = schema.Model.GetRootAs(buffer, 0).Subgraphs(0)
    inputs = subgraph.InputsAsNumpy()  # a writable view into `buffer`
    by_name = {subgraph.Tensors(int(i)).Name().decode(): int(i) for i in inputs}
    inputs[:] = [by_name[name] for name in names]
    return bytes(buffer)


def token_agreement(model, spec, texts):
    """How often MediaPipe's tokenizer gives keras-hub's ids, on `texts`.

    Returns:
        `(fraction of texts with identical ids, indices of the others)`.
    """
    from keras_lowrank.exporters.mediapipe_text import mediapipe_token_ids
    from keras_lowrank.exporters.text_inputs import tokenize

    ours = tokenize(model, texts)["token_ids"]
    theirs = mediapipe_token_ids(spec.tokenizer, texts, spec.sequence_length)
    different = np.flatnonzero(np.any(ours != theirs, axis=1))
    return 1.0 - len(different) / len(texts), different


def _num_classes(model):
    shape = tuple(model.output.shape) if hasattr(model, "output") else ()
    if len(shape) != 2 or not shape[-1]:
        raise ValueError(
            "metadata='text_classifier' needs one output of class scores, "
            f"shape (batch, classes). Received: output shape {shape}"
        )
    return int(shape[-1])


def _model_inputs(model):
    names = tuple(model.input) if isinstance(model.input, dict) else ()
    if "token_ids" not in names or not set(names) <= set(INPUT_NAMES):
        raise ValueError(
            "metadata='text_classifier' feeds token_ids, padding_mask and "
            f"segment_ids. Received: a model with inputs {list(names)}"
        )
    return tuple(name for name in INPUT_NAMES if name in names)


def _needs_softmax(model):
    activation = getattr(model, "activation", None)
    name = getattr(activation, "__name__", activation)
    if name in (None, "linear"):
        return True
    if name == "softmax":
        return False
    raise ValueError(
        "metadata='text_classifier' ships class scores, a softmax over the "
        "logits. Supported: a classifier with activation None (logits) or "
        f"'softmax'. Received: activation={name!r}"
    )


def _tokenizer_files(preprocessor):
    import keras_hub

    tokenizer = getattr(preprocessor, "tokenizer", None)
    kinds = "WordPiece (BERT-style vocabulary) or SentencePiece with [CLS]/[SEP]"
    if isinstance(tokenizer, keras_hub.tokenizers.WordPieceTokenizer):
        _check_wordpiece(tokenizer)
        vocabulary = tuple(tokenizer.get_vocabulary())
        _check_special_tokens(tokenizer, vocabulary)
        bad = [t for t in vocabulary if "\n" in t or "\r" in t or t == ""]
        if bad:
            raise ValueError(
                "MediaPipe reads the vocabulary one token per line; tokens "
                f"may not be empty or hold line breaks. Received: {bad[:3]!r}"
            )
        return TokenizerFiles("wordpiece", vocabulary=vocabulary)
    if isinstance(tokenizer, keras_hub.tokenizers.SentencePieceTokenizer):
        vocabulary = tuple(tokenizer.get_vocabulary())
        _check_special_tokens(tokenizer, vocabulary)
        _check_case_insensitive(tokenizer)
        return TokenizerFiles("sentencepiece", sentencepiece_proto=bytes(tokenizer.proto))
    raise ValueError(
        "metadata='text_classifier' can store a tokenizer MediaPipe runs: "
        f"{kinds}. Received: {type(tokenizer).__name__}"
    )


def _check_wordpiece(tokenizer):
    wrong = [
        f"{option}={getattr(tokenizer, option, None)!r} ({why}; needs {value!r})"
        for option, (value, why) in _WORDPIECE_OPTIONS.items()
        if getattr(tokenizer, option, value) != value
    ]
    if wrong:
        raise ValueError(
            "MediaPipe's WordPiece tokenizer cannot reproduce this "
            f"{type(tokenizer).__name__}: {'; '.join(wrong)}"
        )


def _check_special_tokens(tokenizer, vocabulary):
    missing = [t for t in (START_TOKEN, END_TOKEN) if t not in vocabulary]
    start = getattr(tokenizer, "start_token", START_TOKEN)
    end = getattr(tokenizer, "end_token", END_TOKEN)
    if missing or (start, end) != (START_TOKEN, END_TOKEN):
        raise ValueError(
            "MediaPipe's BERT preprocessor wraps text in '[CLS]' ... '[SEP]'. "
            f"Received: a {type(tokenizer).__name__} with start_token="
            f"{start!r}, end_token={end!r}"
            + (f", and no {missing} in its vocabulary" if missing else "")
        )


def _check_case_insensitive(tokenizer):
    # MediaPipe lowercases ASCII before SentencePiece: a model that keeps
    # case would see other text than keras-hub gives it.
    cased = np.asarray(tokenizer(_CASE_PROBE))
    lowered = np.asarray(tokenizer(_CASE_PROBE.lower()))
    if cased.shape != lowered.shape or np.any(cased != lowered):
        raise ValueError(
            "MediaPipe lowercases ASCII letters before SentencePiece, but "
            f"this {type(tokenizer).__name__} tells case apart "
            f"({_CASE_PROBE!r} and its lowercase give other ids). Supported: "
            "an uncased SentencePiece model"
        )


def _labels(model, labels, num_classes):
    source = "labels"
    if labels is None:
        labels = getattr(model, "label_names", None)
        source = "model.label_names"
    if labels is None:
        return tuple(str(i) for i in range(num_classes))
    if isinstance(labels, str) or not all(isinstance(x, str) for x in labels):
        raise ValueError(
            f"`{source}` must be a list of strings. Received: {labels!r}"
        )
    labels = tuple(labels)
    if len(labels) > num_classes:
        raise ValueError(
            f"`{source}` names {len(labels)} labels, but the model has "
            f"{num_classes} outputs: at most {num_classes} labels. Received: "
            f"{list(labels)}"
        )
    if len(labels) < num_classes:
        raise ValueError(
            f"`{source}` names {len(labels)} labels, but the model has "
            f"{num_classes} outputs: one label per output. Received: "
            f"{list(labels)}"
        )
    bad = [x for x in labels if not x or "\n" in x or "\r" in x]
    if bad or len(set(labels)) != len(labels):
        raise ValueError(
            f"`{source}` must be distinct, non-empty names without line "
            f"breaks. Received: {list(labels)}"
        )
    return labels
