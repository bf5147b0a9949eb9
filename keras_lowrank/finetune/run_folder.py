"""What a run folder holds, and how an earlier one is recognized.

`finetune` builds its run folder in a temporary folder beside `--out` and
moves it into place at the end (`keras_lowrank._atomic.atomic_path`), so
`--out` always holds exactly one run: an error or an interrupt leaves the
earlier run as it was. An existing `--out` is replaced only when it is
empty or `is_run_folder` accepts it.
"""

import os

ADAPTERS_FILE = "adapters.safetensors"
REPORT_FILE = "report.json"
CURVES_FILE = "training_curves.png"
ARTIFACT_FILES = {"tflite": "model.tflite", "onnx": "model.onnx"}
RUN_FILES = (ADAPTERS_FILE, REPORT_FILE, CURVES_FILE, *ARTIFACT_FILES.values())


def is_run_folder(folder) -> bool:
    """Whether `folder` is an earlier run folder, and holds nothing else.

    It holds report.json and adapters.safetensors, and otherwise only files
    a run writes, or hidden temporaries of them (`.<run file>.*`, which a
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
    return all(name in RUN_FILES or _is_temporary_of_run_file(name)
               for name in names)


is_run_folder.description = (
    f"{REPORT_FILE} and {ADAPTERS_FILE}, and no files but a run's")


def _is_temporary_of_run_file(name):
    return any(name.startswith(f".{run_file}.") for run_file in RUN_FILES)
