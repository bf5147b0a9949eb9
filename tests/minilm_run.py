"""`keras-lowrank finetune` on a slice of the real MR data, run once per
test session: the real-model files read its report and files
(`minilm_finetune_run` in tests/conftest.py).

960 training sentences, 2 epochs (60 steps) at sequence length 32, 200
validation and 200 test sentences: every stage runs (MiniLM + LoRA, Keras
test accuracy, adapter file, LiteRT (int8 weights) and ONNX export with
their accuracy, the phone artifacts (MediaPipe's raw-text classifier and
the int8 LiteRT model) measured on the 200 raw test sentences, report.json
and the PNG) in about three minutes on 2 cores.
"""

import json
import os

from keras_lowrank.cli.main import main
from keras_lowrank.data import fetch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_EXAMPLES = 960
EVAL_EXAMPLES = 200
EPOCHS = 2


def finetune_minilm(out):
    """Runs the command into folder `out`; returns `(exit code, out, report)`."""
    cache = os.path.join(REPO, ".cache")
    fetch.fetch_mr_polarity(cache)  # a no-op when `make fetch` ran
    code = main([
        "finetune", "--quiet", "--cache-dir", cache, "--out", str(out),
        "--max-train-examples", str(TRAIN_EXAMPLES),
        "--max-eval-examples", str(EVAL_EXAMPLES), "--epochs", str(EPOCHS),
        "--sequence-length", "32", "--learning-rate", "3e-3",
    ])
    with open(os.path.join(out, "report.json"), encoding="utf-8") as file:
        return code, out, json.load(file)
