"""What every fine-tuning run shares: its options, its folder, its exports.

A task (the classifier's `keras_lowrank.finetune`, the causal LM's
`keras_lowrank.lm_finetune`) is built on these:
- `RunOptions`: the shared settings and their checks; a task's options
  subclass it.
- `run_in_build_folder`: the task's stages run in a folder beside `--out`,
  the report written last, the folder moved to `--out` whole (`check_out`
  refuses a bad `--out` first).
- `record_export`: one export's result, or its error in one line.
- `Progress`: the `[k/6] stage ...` lines and each stage's times.

Example:
```python
from keras_lowrank.runs import check_out, run_in_build_folder

check_out("runs/mine")
report = run_in_build_folder("runs/mine", stages, log=print, summary=str)
```
"""

from keras_lowrank.runs.build_folder import check_out
from keras_lowrank.runs.build_folder import run_in_build_folder
from keras_lowrank.runs.export_record import EXPORT_ERRORS
from keras_lowrank.runs.export_record import record_export
from keras_lowrank.runs.progress import Progress
from keras_lowrank.runs.run_options import RunOptions

__all__ = [
    "EXPORT_ERRORS",
    "Progress",
    "RunOptions",
    "check_out",
    "record_export",
    "run_in_build_folder",
]
