"""The artifacts a phone app ships, written and measured by a run.

Next to the token-id exports (`--export`), a run writes what issue 9 calls
the phone artifacts, each judged on the whole test split in the runtime a
phone runs it in:

- `text_classifier`: a LiteRT model with MediaPipe metadata (tokenizer and
  label names inside) that MediaPipe's `TextClassifier` runs on raw text
  (`export(..., metadata="text_classifier")`); its accuracy is MediaPipe's,
  on the raw test strings, tokenized by MediaPipe itself, and so is its
  label agreement with Keras on every test string (at least 99.5%, else
  refused).
- `int8`: the full-integer LiteRT model (`quantize="int8"`: int8 weights and
  activations, the layers that break accuracy kept in float), calibrated on
  the first `CALIBRATION_EXAMPLES` training texts; its accuracy is LiteRT's,
  on the test strings tokenized by the classifier's preprocessor. Of the
  full-integer modes measured on the demo classifier (`docs/export.md`),
  it is the one that is both accurate (+0.12 point vs Keras) and faster
  than float LiteRT (1.7x); `int16x8` (+0.25) runs 15x slower than float on
  LiteRT's reference kernels.

Each is exported with `eval_data` = the test split, so an artifact more
than 1.0 point below Keras is refused by `export` (nothing written); the
run reports it as failed, with the measured figures, and exits 1.

Which format, quantize mode and metadata each artifact takes is checked
against the exporters' registry (`keras_lowrank.exporters.get_format`).
"""

import dataclasses

from keras_lowrank import exporters
from keras_lowrank.exporters import AccuracyDropError
from keras_lowrank.exporters import get_format
from keras_lowrank.exporters.text_classifier import text_classifier_spec
from keras_lowrank.runs.checks import finite_or_none
from keras_lowrank.runs.export_record import EXPORT_ERRORS
from keras_lowrank.runs.export_record import record_export

# Training texts the int8 artifact is calibrated on (as measured in
# docs/export.md: 256 MR training sentences).
CALIBRATION_EXAMPLES = 256


@dataclasses.dataclass(frozen=True)
class PhoneArtifact:
    """One phone artifact of a run.

    Args:
        name: str. Its name in `FinetuneOptions.phone_artifacts` and the
            prefix of its report keys (`int8_test_accuracy`).
        title: str. Its row in the summary table.
        format: str. The registered export format that writes it.
        quantize: str or None. The format's quantize mode.
        metadata: str or None. The format's `metadata=` kind.
        runs_on: str. What it takes, and the runtime that measured it.
    """

    name: str
    title: str
    format: str
    quantize: str | None
    metadata: str | None
    runs_on: str

    @property
    def file(self) -> str:
        """Its file name in a run folder: `model_int8.tflite`."""
        return get_format(self.format).artifact_name(f"model_{self.name}")

    @property
    def calibrated(self) -> bool:
        """Whether its quantize mode calibrates on training examples."""
        return self.quantize in get_format(self.format).calibrated_modes


ARTIFACTS = (
    PhoneArtifact("text_classifier", "LiteRT + metadata (MediaPipe)", "tflite",
                  None, "text_classifier", "raw text, in MediaPipe's TextClassifier"),
    PhoneArtifact("int8", "LiteRT (int8, full integer)", "tflite", "int8", None,
                  "token ids, in LiteRT"),
)
_BY_NAME = {artifact.name: artifact for artifact in ARTIFACTS}
# Every phone artifact, in the order a run writes them.
NAMES = tuple(_BY_NAME)

# Keys every report.json holds for each phone artifact, as `<name>_<key>`,
# None where it was not written.
# `label_agreement` is on the sample strings export checks first,
# `test_label_agreement` on every test string (MediaPipe figures only).
REPORT_KEYS = ("test_accuracy", "accuracy_diff", "bytes", "latency_ms",
               "latency_max_ms", "max_abs_diff", "label_agreement",
               "test_label_agreement", "token_agreement")


def get_artifact(name) -> PhoneArtifact:
    """The record of phone artifact `name`.

    Raises:
        ValueError: naming the supported artifacts.
    """
    if not isinstance(name, str) or name not in _BY_NAME:
        raise ValueError(
            f"Unrecognized phone artifact {name!r}. Supported phone artifacts "
            f"are: {list(NAMES)}"
        )
    artifact = _BY_NAME[name]
    record = get_format(artifact.format)
    if artifact.quantize not in record.quantize_modes or (
            artifact.metadata is not None
            and artifact.metadata not in record.metadata_kinds):
        raise ValueError(
            f"Phone artifact {name!r} needs quantize={artifact.quantize!r} and "
            f"metadata={artifact.metadata!r} of export format {artifact.format!r}, "
            f"which supports quantize in {list(record.quantize_modes)} and "
            f"metadata in {list(record.metadata_kinds)}"
        )
    return artifact


def is_phone_artifact(name) -> bool:
    """Whether `name` (a key of `report["exports"]`) names a phone artifact."""
    return name in _BY_NAME


def report_values(name, exported, keras_accuracy) -> dict:
    """The `REPORT_KEYS` of one phone artifact, from its `report["exports"]`
    entry (`{}` when it was not written; with `error` when it failed).

    Args:
        name: str. The artifact's name.
        exported: dict. Its entry.
        keras_accuracy: float. The Keras model's test accuracy.
    """
    failed = "error" in exported
    accuracy = None if failed else exported.get("accuracy")
    by_length = exported.get("latency_by_length") or {}
    values = {
        "test_accuracy": accuracy,
        "accuracy_diff": None if accuracy is None else accuracy - keras_accuracy,
        "bytes": None if failed else exported.get("size_bytes"),
        "latency_ms": finite_or_none(by_length.get("median", {}).get("ms")),
        "latency_max_ms": finite_or_none(by_length.get("max", {}).get("ms")),
        "max_abs_diff": finite_or_none(exported.get("max_abs_diff")),
        "label_agreement": exported.get("label_agreement"),
        "test_label_agreement": None if failed else exported.get("eval_label_agreement"),
        "token_agreement": exported.get("token_agreement"),
    }
    return {f"{name}_{key}": values[key] for key in REPORT_KEYS}


def check_phone_artifacts(model, names, labels):
    """Checks, once the model is loaded, that artifacts `names` can be made.

    `text_classifier` ships the model's tokenizer to MediaPipe, which runs
    only some tokenizers (uncased WordPiece, for one): a model it cannot
    represent is refused here, before training, rather than after it.

    Args:
        model: the classifier, its preprocessor attached.
        names: tuple of str. The run's phone artifacts.
        labels: list of str. The label names.

    Raises:
        ValueError: one line naming the artifact, MediaPipe's reason and
            how to leave the artifact out.
    """
    for name in names:
        if get_artifact(name).metadata != "text_classifier":
            continue
        try:
            text_classifier_spec(model, list(labels))
        except ValueError as error:
            reason = " ".join(str(error).split())
            raise ValueError(
                f"phone artifact {name!r} (raw text in MediaPipe) cannot be "
                f"made from this model: {reason}. Supported: a model "
                "whose tokenizer MediaPipe reproduces (uncased WordPiece, or "
                "uncased SentencePiece). To train this model, leave the "
                "artifact out: --no-phone-artifacts, or "
                "FinetuneOptions(phone_artifacts=('int8',))"
            ) from None


def export_phone_artifact(model, name, path, final, test, calibration, labels) -> dict:
    """Writes phone artifact `name` at `path` and measures it on `test`.

    Args:
        model: the trained classifier, its preprocessor attached, float32.
        name: str. A name of `NAMES`.
        path: str. Where to write it.
        final: str. Its place in `--out`, which the result names.
        test: `(texts, labels)`: the raw test strings and integer labels.
        calibration: list of str. Training texts, for a calibrated mode.
        labels: list of str. The label names, stored in the metadata.

    Returns:
        The `ExportReport` as a dict (its `accuracy` the runtime's on every
        test string, `path` = `final`), or `{"error": message, ...}` when
        the export failed or was refused; then nothing is left at `path`.
        Either way `artifact` is `name`.
    """
    artifact = get_artifact(name)

    def write():
        return exporters.export(
            model, path, artifact.format, quantize=artifact.quantize,
            metadata=artifact.metadata,
            labels=list(labels) if artifact.metadata else None,
            calibration_data=list(calibration) if artifact.calibrated else None,
            eval_data=test,
        ).to_dict()

    def failed(error):
        if isinstance(error, AccuracyDropError):
            return {"quantize": artifact.quantize, "accuracy": error.accuracy,
                    "keras_accuracy": error.keras_accuracy}
        return {"quantize": artifact.quantize}

    # ValueError: a model MediaPipe cannot represent that
    # `check_phone_artifacts` did not foresee; the rest of the run stands.
    result = record_export(write, path, final, failed=failed,
                           errors=(AccuracyDropError, *EXPORT_ERRORS, ValueError))
    result["artifact"] = name
    return result
