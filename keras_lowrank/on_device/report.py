"""`TrainableReport`: what `export_trainable` wrote and measured."""

import dataclasses


@dataclasses.dataclass(frozen=True)
class TrainableReport:
    """A trainable LiteRT artifact, as written and checked.

    Attributes:
        path, size_bytes: the artifact.
        task: `"classifier"` or `"causal_lm"`.
        training: the `OnDeviceTraining` it carries.
        trained_parameters, factors: how many numbers and tensors train.
        ops: its builtin op names.
        checks: `verification.ArtifactChecks`, or None when not verified.
        export_seconds: tracing and conversion.
        tokenizer: the kind of tokenizer the artifact carries (`"wordpiece"`,
            `"tokenizer.json"`), or None: it then trains on token ids only.
    """

    path: str
    size_bytes: int
    task: str
    training: object
    trained_parameters: int
    factors: int
    ops: tuple
    checks: object
    export_seconds: float
    tokenizer: str | None = None

    def __str__(self):
        t = self.training
        lines = [
            f"Trainable LiteRT artifact {self.path} ({self.size_bytes / 1e6:.1f} MB), "
            f"{self.task}: {self.trained_parameters:,} parameters in {self.factors} "
            f"tensors train with {t.optimizer} (learning rate {t.learning_rate}), "
            f"batch {t.batch_size} x {t.sequence_length or 'model length'} tokens.",
            f"Signatures infer, train, save, restore; {len(self.ops)} builtin ops, "
            f"no Flex or custom op. Exported in {self.export_seconds:.1f} s.",
        ]
        if self.tokenizer is None:
            lines.append("No tokenizer inside: it trains on token ids (a causal LM takes "
                         "tokenizer='tokenizer.json' for export/train_on_device.py).")
        else:
            lines.append(f"Tokenizer inside ({self.tokenizer}): it trains on raw text.")
        if self.checks is not None:
            lines.append(str(self.checks))
        return "\n".join(lines)
