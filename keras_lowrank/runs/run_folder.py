"""What a run folder holds, and how an earlier one is recognized.

Every run builds its run folder in a temporary folder beside `--out` and
moves it into place at the end (`build_folder.run_in_build_folder`), so
`--out` always holds exactly one run: an error or an interrupt leaves the
earlier run as it was. An existing `--out` is replaced only when it is
empty or `is_run_folder` accepts it.
"""

import os

from keras_lowrank.exporters import all_formats
from keras_lowrank.exporters import get_format
from keras_lowrank.runs import phone_artifacts

ADAPTERS_FILE = "adapters.safetensors"
REPORT_FILE = "report.json"
CURVES_FILE = "training_curves.png"
# An AdaLoRA run's per-layer final ranks (`adapter_report`).
RANKS_FILE = "rank_allocation.png"
# Artifacts are named after it and their format: `model.tflite`, ...
ARTIFACT_STEM = "model"
# A causal-LM run's artifacts for the phone's own LLM runtimes, by format:
# a LiteRT-LM bundle and an ONNX Runtime GenAI folder.
# `litertlm_lora` is a folder of a LiteRT-LM base bundle, its LoRA inputs
# empty, and the run's adapters as the runtime's LoRA file.
ADAPTER_BUNDLE = "litertlm_lora"
ADAPTER_BUNDLE_FILES = ("base.litertlm", "adapters.lora.tflite")
RUNTIME_ARTIFACTS = {"litertlm": f"{ARTIFACT_STEM}.litertlm",
                     "onnx_genai": "onnx_genai",
                     ADAPTER_BUNDLE: ADAPTER_BUNDLE}
RUNTIME_FOLDERS = ("onnx_genai", ADAPTER_BUNDLE)


def export_formats() -> tuple[str, ...]:
    """The formats a run can export: every registered one-file format.

    A run folder holds files only (`is_run_folder` recognizes an earlier
    one by them), so a format whose artifact is a folder is left out.
    Read from the exporters' registry at each call.
    """
    return tuple(record.name for record in all_formats() if not record.directory)


def artifact_file(format) -> str:
    """The name of the `format` artifact in a run folder: `model.tflite`."""
    return get_format(format).artifact_name(ARTIFACT_STEM)


def run_files() -> tuple[str, ...]:
    """Every file (or, for `RUNTIME_FOLDERS`, folder) name a run may write."""
    return (ADAPTERS_FILE, REPORT_FILE, CURVES_FILE, RANKS_FILE,
            *(artifact_file(f) for f in export_formats()),
            *RUNTIME_ARTIFACTS.values(),
            *(phone_artifacts.get_artifact(n).file for n in phone_artifacts.NAMES))


def is_run_folder(folder) -> bool:
    """Whether `folder` is an earlier run folder, and holds nothing else.

    It holds report.json and adapters.safetensors, and otherwise only files
    a run writes (and the `RUNTIME_FOLDERS` it writes), or hidden
    temporaries of them (`.<run file>.*`, which a
    killed run of an earlier version left). A folder holding anything of the
    user's is never replaced.

    Args:
        folder: str. An existing folder.

    Example:
    ```python
    check_target("runs/demo", directory=True, replaceable=is_run_folder)
    ```
    """
    names = os.listdir(folder)
    if not all(os.path.isfile(os.path.join(folder, name))
               for name in (REPORT_FILE, ADAPTERS_FILE)):
        return False
    files = run_files()
    return all(_is_run_entry(folder, name, files)
               or _is_temporary_of_run_file(name, files)
               for name in names)


is_run_folder.description = (
    f"{REPORT_FILE} and {ADAPTERS_FILE}, and no files but a run's")


def _is_run_entry(folder, name, files):
    """A file a run writes, or one of its runtime folders."""
    if name not in files:
        return False
    return os.path.isdir(os.path.join(folder, name)) == (name in RUNTIME_FOLDERS)


def _is_temporary_of_run_file(name, files):
    return any(name.startswith(f".{run_file}.") for run_file in files)
