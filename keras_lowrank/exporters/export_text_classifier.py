"""`export(..., metadata="text_classifier")`: write, run in MediaPipe, check.

The artifact (`text_classifier.write_text_classifier`) is checked the way a
phone app uses it: MediaPipe's `TextClassifier` classifies raw strings, and
its class scores are compared with the Keras model's on the same strings
(Keras tokenizing with its own preprocessor). The report gives the label
agreement, the largest score difference, and how often MediaPipe's
tokenizer gives keras-hub's exact token ids. Only a passing artifact is
moved to `path`.
"""

import math
import os

import numpy as np

from keras_lowrank._atomic import atomic_path
from keras_lowrank.exporters import accuracy as accuracy_lib
from keras_lowrank.exporters.artifact_checks import merged_for_export
from keras_lowrank.exporters.calibration import calibration_rows
from keras_lowrank.exporters.mediapipe_text import MediaPipeClassifier
from keras_lowrank.exporters.report import ExportReport
from keras_lowrank.exporters.report import artifact_size
from keras_lowrank.exporters.text_classifier import INPUT_NAMES
from keras_lowrank.exporters.text_classifier import keras_scores
from keras_lowrank.exporters.text_classifier import serving_inputs
from keras_lowrank.exporters.text_classifier import text_classifier_spec
from keras_lowrank.exporters.text_classifier import token_agreement
from keras_lowrank.exporters.text_classifier import write_text_classifier
from keras_lowrank.exporters.text_inputs import as_text_list
from keras_lowrank.exporters.text_inputs import is_texts
from keras_lowrank.exporters.text_inputs import token_lengths
from keras_lowrank.exporters.text_inputs import tokenize
from keras_lowrank.exporters.tflite import TFLiteRunner
from keras_lowrank.exporters.verification import ExportVerificationError
from keras_lowrank.exporters.verification import tolerance_for

FORMAT = "tflite"
# Strings checked when no sample texts are given: casing, punctuation,
# digits, an unknown word, and one longer than most sequence lengths.
DEFAULT_TEXTS = (
    "A gripping, beautifully acted film.",
    "The plot was dull and the ending made no sense.",
    "I LOVED EVERY MINUTE OF IT!",
    "not bad at all",
    "Worst movie of 2023? Maybe.",
    "An uneven but ultimately rewarding story about family.",
    "The cast tries hard; the script does not.",
    "meh",
    "Zyxwv qlorptent flimflam.",
    "It's a fun, light-hearted comedy with a great soundtrack.",
    "Two hours of my life I will never get back.",
    "Charming, funny and surprisingly moving.",
    "The special effects are impressive but the characters are paper thin, "
    "the dialogue is clumsy, the pacing drags in the middle, and by the time "
    "the final act arrives it is hard to care about anyone on screen.",
    "Good.",
    "Bad.",
    "A masterpiece of quiet, patient storytelling.",
)
# Texts from `eval_data` classified when no sample texts are given.
SAMPLE_FROM_EVAL = 64
# Share of sample texts on which MediaPipe must give Keras' label: every
# one for float artifacts; near-ties may flip in the quantized ones (their
# accuracy is what `eval_data` checks).
MIN_LABEL_AGREEMENT = {None: 1.0, "float16": 1.0}
MIN_LABEL_AGREEMENT_QUANTIZED = 0.9


def export_text_classifier(model, path, *, quantize=None, labels=None,
                           sample_inputs=None, calibration_data=None,
                           eval_data=None, verify=True, atol=None):
    """The `metadata="text_classifier"` branch of `export` (same arguments).

    Raises:
        ValueError: for a model or labels MediaPipe cannot take
            (`text_classifier_spec`), or sample / eval inputs that are not
            texts; nothing is written.
        ExportVerificationError: MediaPipe's scores differ from Keras' by
            more than the tolerance, its labels agree on too few sample
            texts, or its accuracy on `eval_data` is more than 1.0 point
            below Keras'; nothing is left at `path`.
    """
    spec = text_classifier_spec(model, labels)
    path = os.fspath(path)
    eval_texts, eval_labels = _eval_texts(eval_data)
    texts = _sample_texts(sample_inputs, eval_texts)
    signature = serving_inputs(spec)
    rows = None
    if calibration_data is not None:
        rows = calibration_rows(
            model, signature, _with_all_inputs(model, calibration_data)
        )
    expected = keras_scores(model, spec, _tokens(model, texts))
    keras_accuracy = None
    if eval_texts:
        keras_accuracy = accuracy_lib.accuracy_of(
            _keras_predictions(model, spec, eval_texts), eval_labels
        )
    merged = merged_for_export(model)
    checked = {}
    try:
        with atomic_path(path) as tmp:
            write_text_classifier(
                merged, spec, tmp, quantize=quantize, calibration_rows=rows
            )
            runner = TFLiteRunner(tmp)
            ops, input_shapes = runner.ops(), runner.input_shapes
            precisions = runner.precisions() if quantize is not None else {}
            float_layers = ()
            if quantize in ("int8", "int16x8"):
                float_layers = runner.float_layers()
            if verify:
                checked = _check(
                    tmp, spec, texts, expected, quantize, atol,
                    bound=not eval_texts or quantize is None or atol is not None,
                )
                checked.update(_latencies(model, tmp, texts))
                if eval_texts:
                    checked["accuracy"] = _mediapipe_accuracy(
                        tmp, eval_texts, eval_labels, keras_accuracy, quantize
                    )
    except ExportVerificationError as error:
        error.args = (
            f"{error.args[0]} The artifact was removed; {path!r} is unchanged.",
        )
        raise
    agreement = None
    if verify:
        agreement, _ = token_agreement(model, spec, texts)
    return ExportReport(
        format=FORMAT,
        path=path,
        size_bytes=artifact_size(path),
        max_abs_diff=checked.get("max_score_diff"),
        tolerance=checked.get("tolerance"),
        latency_ms=checked.get("latency_by_length", {}).get("median", {}).get("ms"),
        ops=ops,
        quantize=quantize,
        batch_sizes_checked=(1,) if checked else (),
        input_names=INPUT_NAMES,
        output_names=("scores",),
        verified=bool(checked),
        runtime=checked.get("runtime", ""),
        notes=_notes(spec),
        input_shapes=input_shapes,
        sequence_lengths_checked=(spec.sequence_length,) if checked else (),
        latency_by_length=checked.get("latency_by_length", {}),
        precisions=precisions,
        float_layers=float_layers,
        accuracy=checked.get("accuracy"),
        keras_accuracy=keras_accuracy,
        eval_examples=len(eval_texts),
        metadata="text_classifier",
        labels=spec.labels,
        label_agreement=checked.get("label_agreement"),
        max_score_diff=checked.get("max_score_diff"),
        token_agreement=agreement,
        texts_checked=len(texts) if checked else 0,
    )


def _check(path, spec, texts, expected, quantize, atol, bound):
    with MediaPipeClassifier(path) as classifier:
        scores = classifier(texts)
        runtime = classifier.runtime
    if scores.shape != expected.shape:
        raise ExportVerificationError(
            f"MediaPipe gives {scores.shape[-1]} scores per text; Keras gives "
            f"{expected.shape[-1]}.",
            format=FORMAT,
        )
    diff = np.abs(scores.astype("float64") - expected)
    diff[~np.isfinite(diff)] = np.inf
    max_diff = float(diff.max())
    agree = scores.argmax(axis=-1) == expected.argmax(axis=-1)
    agreement = float(np.mean(agree))
    tolerance = tolerance_for(quantize, atol, scale=1.0) if bound else math.inf
    minimum = MIN_LABEL_AGREEMENT.get(quantize, MIN_LABEL_AGREEMENT_QUANTIZED)
    if not max_diff <= tolerance or agreement < minimum:
        worst = int(np.argmax(diff.max(axis=-1)))
        disagreeing = [texts[i] for i in np.flatnonzero(~agree)[:3]]
        raise ExportVerificationError(
            f"MediaPipe's TextClassifier does not match Keras "
            f"(quantize={quantize!r}) on {len(texts)} texts: label agreement "
            f"{agreement:.4f} (at least {minimum:g} needed), max score diff "
            f"{max_diff:.3g} (tolerance {tolerance:.3g}) on {texts[worst]!r}"
            + (f"; labels differ on {disagreeing!r}" if disagreeing else "")
            + ".",
            max_abs_diff=max_diff,
            tolerance=tolerance,
            format=FORMAT,
            output_name="scores",
            batch_size=1,
        )
    return {
        "max_score_diff": max_diff,
        "tolerance": None if math.isinf(tolerance) else tolerance,
        "label_agreement": agreement,
        "runtime": runtime,
    }


def _latencies(model, path, texts):
    """MediaPipe's time per string (tokenizing included) by token length."""
    from keras_lowrank.exporters.verification import median_latency_ms

    lengths = token_lengths(_tokens(model, texts))
    order = np.argsort(lengths, kind="stable")
    median, longest = int(order[len(order) // 2]), int(order[-1])
    with MediaPipeClassifier(path) as classifier:
        return {"latency_by_length": {
            key: {
                "tokens": int(lengths[i]),
                "ms": median_latency_ms(classifier.classify, texts[i]),
            }
            for key, i in (("median", median), ("max", longest))
        }}


def _mediapipe_accuracy(path, texts, labels, keras_accuracy, quantize):
    with MediaPipeClassifier(path) as classifier:
        predicted = classifier(texts).argmax(axis=-1)
    accuracy = accuracy_lib.accuracy_of(predicted, labels)
    accuracy_lib.check_accuracy(
        accuracy, keras_accuracy, len(texts), format="tflite (MediaPipe)",
        quantize=quantize,
    )
    return accuracy


def _keras_predictions(model, spec, texts, batch_size=64):
    predicted = []
    for start in range(0, len(texts), batch_size):
        flat = _tokens(model, texts[start : start + batch_size])
        predicted.append(keras_scores(model, spec, flat).argmax(axis=-1))
    return np.concatenate(predicted)


def _tokens(model, texts):
    return _complete(tokenize(model, list(texts)))


def _complete(flat):
    """Adds zero `segment_ids` for a model that takes none (MediaPipe feeds
    all three inputs)."""
    first = next(iter(flat.values()))
    return {
        name: flat.get(name, np.zeros_like(first)).astype("int32")
        for name in INPUT_NAMES
    }


def _with_all_inputs(model, data):
    if is_texts(data):
        return _tokens(model, as_text_list(data))
    if isinstance(data, dict):
        return _complete(data)
    return data


def _sample_texts(sample_inputs, eval_texts):
    if sample_inputs is None:
        return list(eval_texts[:SAMPLE_FROM_EVAL]) or list(DEFAULT_TEXTS)
    if not is_texts(sample_inputs):
        raise ValueError(
            "metadata='text_classifier' is checked on raw strings, so "
            "`sample_inputs` must be a list of texts. Received: "
            f"{type(sample_inputs).__name__}"
        )
    return as_text_list(sample_inputs)


def _eval_texts(eval_data):
    if eval_data is None:
        return (), None
    if not isinstance(eval_data, (tuple, list)) or len(eval_data) != 2:
        raise ValueError(
            "`eval_data` must be a pair (texts, labels). Received: "
            f"{type(eval_data).__name__}"
        )
    texts, labels = eval_data
    if not is_texts(texts):
        raise ValueError(
            "metadata='text_classifier' runs MediaPipe on raw strings, so "
            "`eval_data` must be (texts, labels). Received: inputs of type "
            f"{type(texts).__name__}"
        )
    labels = np.asarray(labels)
    if (
        labels.ndim != 1
        or len(labels) != len(texts)
        or not np.issubdtype(labels.dtype, np.integer)
    ):
        raise ValueError(
            "`eval_data` labels must be integer class ids, one per text. "
            f"Received: labels of shape {labels.shape} and dtype {labels.dtype} "
            f"for {len(texts)} texts"
        )
    return tuple(as_text_list(texts)), labels


def _notes(spec):
    return (
        f"MediaPipe TextClassifier input: raw text; WordPiece/SentencePiece "
        f"tokenizer and {spec.num_classes} labels in the metadata; fixed "
        f"length {spec.sequence_length} (longer texts are truncated), batch 1; "
        "output: class scores (softmax).",
    )
