"""`export_lm_run`: a finished causal-LM run exported again, in another
format or quantization, from its adapter file, and measured on the run's
own test prompts in the runtime, without training again."""

import json
import os
import tempfile

import keras_lowrank as klr
from keras_lowrank.lm_finetune import lm_pipeline
from keras_lowrank.lm_finetune.causal_lm_loading import load_causal_lm
from keras_lowrank.lm_finetune.chat_format import ChatFormat
from keras_lowrank.lm_finetune.lm_evaluation import scored_rows
from keras_lowrank.lm_finetune.lm_export import LITERT_FORMATS
from keras_lowrank.lm_finetune.lm_export import RUNTIME_ARTIFACTS
from keras_lowrank.lm_finetune.lm_export import export_and_measure
from keras_lowrank.lm_finetune.lm_export import lm_artifact
from keras_lowrank.lm_finetune.lm_finetune_options import GENERATION_FORMATS
from keras_lowrank.lm_finetune.lm_finetune_options import LMFinetuneOptions
from keras_lowrank.runs.run_folder import ADAPTERS_FILE
from keras_lowrank.runs.run_folder import REPORT_FILE
from keras_lowrank.utils.atomic import check_target


def export_lm_run(run, path, format="tflite", *, tflite_quantize=None,
                  tflite_keep_float=None):
    """Exports the model of run folder `run` to `path` and measures it.

    The base model, data and test prompts are those the run's report.json
    names (its options, its seed); the adapters are the run's
    adapters.safetensors, merged. The artifact is checked against Keras as
    `finetune_lm` checks its own (token for token in float32; next-token
    agreement under `tflite_quantize="dynamic"`), then answers the run's
    test prompts in its runtime.

    Args:
        run: str. A folder written by `finetune_lm` (`keras-lowrank
            finetune --task causal-lm`).
        path: str. The artifact to write (nothing is written on failure):
            a file, or a folder for `"onnx_genai"`.
        format: str. Among `GENERATION_FORMATS`.
        tflite_quantize: None or "dynamic" (LiteRT and LiteRT-LM only).
        tflite_keep_float: tuple of str or None (the run's own option): with
            "dynamic", the layers left in float32.

    Returns:
        The export's entry as a run's `report["exports"][format]` holds it,
        plus `keras_test_accuracy`, the run's Keras figure on the same
        prompts.

    Raises:
        FileNotFoundError: `run` lacks report.json or adapters.safetensors.
        ValueError: a report of another task, a bad format or quantization,
            or an export that failed its check (the message says why).

    Example:
    ```python
    measured = export_lm_run("runs/demo-lm", "runs/lm_int8.tflite",
                             tflite_quantize="dynamic")
    print(measured["test_accuracy"], measured["keras_test_accuracy"])
    ```
    """
    report = _read_report(run)
    if format not in GENERATION_FORMATS:
        raise ValueError(f"Unrecognized format={format!r}. Supported formats "
                         f"are: {list(GENERATION_FORMATS)}")
    check_target(path, directory=format in RUNTIME_ARTIFACTS)
    values = {**report["options"], "export": (format,), "verbose": 0,
              "tflite_quantize": tflite_quantize if format in LITERT_FORMATS else None}
    if tflite_keep_float is not None:
        values["tflite_keep_float"] = tuple(tflite_keep_float)
    folder = os.path.dirname(os.path.abspath(path))
    with tempfile.TemporaryDirectory(prefix=".klr_lm_export_", dir=folder) as build:
        options = LMFinetuneOptions(**{**values, "out": os.path.join(build, "run")})
        model_folder = lm_pipeline.model_folder(options)
        chat = ChatFormat.from_folder(
            model_folder, lm_pipeline.vocabulary_size(model_folder),
            options.tokenizer_file)
        examples, _, splits = lm_pipeline.load_splits(options, chat)
        scored = scored_rows(splits["test"])
        model = klr.load_adapters(load_causal_lm(model_folder),
                                  os.path.join(run, ADAPTERS_FILE))
        measured = export_and_measure(
            model, format, model_folder, chat, splits["test"], scored,
            examples, options, build)
        if "error" in measured:
            raise ValueError(f"Export of run {run!r} as {format} "
                             f"(tflite_quantize={tflite_quantize!r}) failed: "
                             f"{measured['error']}")
        os.replace(os.path.join(build, lm_artifact(format)), path)
    measured["path"] = path
    measured["keras_test_accuracy"] = report["test_accuracy"]
    return measured


def _read_report(run):
    for name in (REPORT_FILE, ADAPTERS_FILE):
        if not os.path.isfile(os.path.join(run, name)):
            raise FileNotFoundError(
                f"run={run!r} has no {name}: pass a folder written by "
                "`keras-lowrank finetune --task causal-lm`.")
    with open(os.path.join(run, REPORT_FILE), encoding="utf-8") as file:
        report = json.load(file)
    if report.get("task") != "causal-lm":
        raise ValueError(f"run={run!r} is a {report.get('task', 'classifier')!r} "
                         "run; export_lm_run exports causal-LM runs.")
    return report
