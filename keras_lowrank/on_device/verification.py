"""Running a trainable artifact in LiteRT before it is kept.

`infer` is compared with Keras on the sample batch; one `train` step with
the same step in TensorFlow (the module the artifact was converted from):
its loss, and every factor after it (`save`).
"""

import dataclasses

import numpy as np

from keras_lowrank.exporters.verification import ExportVerificationError
from keras_lowrank.on_device.trainable_module import CLASSIFIER

# `infer` against Keras: max(1e-4, 2e-3 x the largest absolute logit).
# float32 over SmolLM2's 30 blocks differs by 9.8e-3 on logits of tens; a
# wrong weight or graph differs by the logits' own size.
LOGITS_ATOL, LOGITS_RTOL = 1e-4, 2e-3
# One optimizer step: LiteRT's factors against TensorFlow's, relative to
# the largest change the step made (Adam's steps are lr-sized everywhere).
# A wrong gradient is off by its own size; float32 noise on SmolLM2 is 3.4e-4.
STEP_RTOL = 1e-3


@dataclasses.dataclass(frozen=True)
class ArtifactChecks:
    """What LiteRT gave against Keras and TensorFlow.

    Attributes:
        logits_max_abs_diff: `infer` against Keras; `logits_bound` its bound.
        loss, loss_abs_diff: the first `train` step's loss in LiteRT, and its
            difference from TensorFlow's.
        step_max_abs_diff: the factors after that step against TensorFlow's.
        step_scale: the largest change of a factor in that step.
    """

    logits_max_abs_diff: float
    logits_bound: float
    loss: float
    loss_abs_diff: float
    step_max_abs_diff: float
    step_scale: float

    def __str__(self):
        return (
            f"Checked in ai_edge_litert: infer max |diff| {self.logits_max_abs_diff:.2e} "
            f"against Keras (bound {self.logits_bound:.0e}); one train step: loss {self.loss:.6f} "
            f"(|diff| {self.loss_abs_diff:.1e}), factors max |diff| "
            f"{self.step_max_abs_diff:.1e} against TensorFlow's (step size "
            f"{self.step_scale:.1e}).")


def training_batch(sample, task, output_size, seed=0):
    """`sample` with `labels` (and `loss_mask`): what `train` takes."""
    rng = np.random.default_rng(seed)
    batch = dict(sample)
    tokens = np.asarray(sample["token_ids"])
    if task == CLASSIFIER:
        batch["labels"] = rng.integers(0, output_size, size=tokens.shape[:1]).astype("int32")
        return batch
    mask = np.asarray(sample["padding_mask"]).astype(bool)
    batch["labels"] = np.concatenate([tokens[:, 1:], tokens[:, -1:] * 0], 1).astype("int32")
    batch["loss_mask"] = np.concatenate([mask[:, 1:], mask[:, -1:] & False], 1).astype("float32")
    return batch


def verify_artifact(path, model, module, sample, task, atol=None):
    """Runs the artifact at `path`; returns `ArtifactChecks`.

    Raises:
        ExportVerificationError: a difference above its bound.
    """
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path)
    expected = np.asarray(model(sample, training=False), np.float32)
    got = interpreter.get_signature_runner("infer")(**sample)["logits"]
    logits_diff = float(np.max(np.abs(got - expected)))
    scale = float(np.max(np.abs(expected)))
    bound = max(LOGITS_ATOL, LOGITS_RTOL * scale) if atol is None else atol
    if not logits_diff <= bound:
        raise ExportVerificationError(
            f"The trainable artifact's infer differs from Keras by {logits_diff:.3g} "
            f"(bound {bound:g}).", max_abs_diff=logits_diff, tolerance=bound,
            format="tflite", output_name="logits", batch_size=len(expected))
    batch = training_batch(sample, task, expected.shape[-1])
    before = {n: v.numpy() for n, v in zip(module.keys, module.trained)}
    loss = float(interpreter.get_signature_runner("train")(**batch)["loss"])
    reference = float(module.train(batch)["loss"])
    after = interpreter.get_signature_runner("save")()
    step_diff = max(float(np.max(np.abs(after[n] - v.numpy())))
                    for n, v in zip(module.keys, module.trained))
    step = max(float(np.max(np.abs(v.numpy() - before[n])))
               for n, v in zip(module.keys, module.trained))
    loss_diff = abs(loss - reference)
    if not (loss_diff <= 1e-4 * max(1.0, abs(reference))
            and step_diff <= STEP_RTOL * step + 1e-7):
        raise ExportVerificationError(
            f"The trainable artifact's train step differs from TensorFlow's: loss "
            f"{loss:.6f} against {reference:.6f}, factors by {step_diff:.3g} for a "
            f"step of {step:.3g}.", max_abs_diff=step_diff, tolerance=STEP_RTOL * step,
            format="tflite", output_name="train", batch_size=len(expected))
    return ArtifactChecks(logits_diff, bound, loss, loss_diff, step_diff, step)
