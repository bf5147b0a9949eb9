"""`RunOptions`: the fields every task shares, checked once, in the same
words for every task."""

import numpy as np
import pytest

from keras_lowrank.finetune import FinetuneOptions
from keras_lowrank.lm_finetune import LMFinetuneOptions
from keras_lowrank.runs import RunOptions

TASKS = (FinetuneOptions, LMFinetuneOptions)


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("field, value, message", [
    ("rank", 0, r"^rank must be a positive integer\. Received: rank=0$"),
    ("batch_size", 2.5, r"^batch_size must be a positive integer\. Received: "
     r"batch_size=2\.5$"),
    ("dropout", 1.0, r"^dropout must be in \[0, 1\)\. Received: dropout=1\.0$"),
    ("weight_decay", -1, r"^weight_decay must be a number >= 0\. Received: "
     r"weight_decay=-1$"),
    ("targets", [""], r"^targets must hold at least one non-empty layer "
     r"pattern\. Received: targets=\[''\]$"),
    ("seed", "1", r"^seed must be an integer\. Received: seed='1'$"),
    ("seed", True, r"^seed must be an integer\. Received: seed=True$"),
    ("verbose", 3, r"^verbose must be 0, 1 or 2\. Received: verbose=3$"),
    ("deterministic", 1, r"^deterministic must be True or False\. Received: "
     r"deterministic=1$"),
    ("test_files", ["t.csv"], r"^validation_files and test_files need "
     r"train_files: the MR data has its own splits\."),
])
def test_every_task_refuses_a_bad_shared_value_in_the_same_words(
        task, field, value, message):
    with pytest.raises(ValueError, match=message):
        task(**{field: value})


@pytest.mark.parametrize("task", TASKS)
def test_every_task_takes_a_numpy_integer_seed(task):
    # The two tasks' checks had drifted: one took only `int`.
    assert task(seed=np.int64(7)).seed == 7


@pytest.mark.parametrize("task", TASKS)
def test_an_unknown_export_names_the_tasks_formats(task):
    with pytest.raises(ValueError) as error:
        task(export=["coreml"])
    assert str(error.value) == (
        "Unrecognized or repeated export format in export=['coreml']. "
        f"Supported formats are: {list(task.supported_exports())}")


def test_the_shared_fields_are_declared_once():
    shared = [field.name for field in RunOptions.__dataclass_fields__.values()]
    for task in TASKS:
        fields = list(task.__dataclass_fields__)
        # Shared fields first, in the base's order; the task's own after.
        assert fields[:len(shared)] == shared
    # 23 + base_quantization, quantize_frozen, base_calibration, adaptive_rank,
    # adaptive_initial_rank
    assert len(shared) == 28


def test_the_base_has_no_task_defaults():
    with pytest.raises(TypeError, match="missing .* keyword-only argument"):
        RunOptions(out="runs/x")
