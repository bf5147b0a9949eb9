"""Trains a trainable LiteRT artifact on text: no TensorFlow, no Keras.

Needs `numpy`, `tokenizers`, `safetensors` and `ai-edge-litert`. The
artifact comes from `klr.export(model, path, "tflite",
on_device_training=klr.OnDeviceTraining(...))`; it carries its tokenizer,
batch size and optimizer. The runner is `keras_lowrank/on_device/`
(`trainer.py`, `text_batches.py`, `adapter_writer.py`), loaded by path so
that the package, and with it Keras, is never imported.

Usage:
    python export/train_on_device.py personal.tflite --train train.jsonl \
        --eval eval.jsonl --epochs 3 --seed 0 --out adapter.safetensors

Lines of a classifier's files are `{"text": ..., "label": 1}` (an id or one
of the artifact's label names); a causal LM's `{"prompt": ...,
"completion": ...}`, trained on the completion only. Each epoch visits the
rows in a new order (from `--seed`) in batches of the artifact's size (see
`text_batches.py` for the short last batch) and prints its mean loss; with
`--eval`, the classifier's accuracy (a causal LM's mean cross-entropy per
completion token) before and after, computed with `infer`. The epoch loss
is what the `train` signature returns, as Keras' `fit` reports it (for a
causal LM, summed over completion tokens and divided by batch x length). The trained adapter file is what
`klr.save_adapters` writes: `klr.load_adapters(base_model, path)` reads it.
`--json` prints one JSON object instead. Exit status 2 with one line on
stderr for bad input (a missing file, a bad JSON line with its number, a
label not in the artifact's labels); nothing is written then.
"""

import argparse
import importlib.util
import json
import os
import sys

import numpy as np

PACKAGE = os.path.join("keras_lowrank", "on_device")


def _module_path(name):
    """`keras_lowrank/on_device/<name>.py` of this checkout, else of the
    installed package."""
    roots = [os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]
    spec = importlib.util.find_spec("keras_lowrank")  # finds, never imports
    if spec is not None and spec.submodule_search_locations:
        roots.append(os.path.dirname(list(spec.submodule_search_locations)[0]))
    for root in roots:
        candidate = os.path.join(root, PACKAGE, f"{name}.py")
        if os.path.isfile(candidate):
            return candidate
    raise SystemExit(f"train_on_device.py: error: cannot find {PACKAGE}/{name}.py")


def load_module(name):
    """keras_lowrank.on_device.<name>, loaded by path (it loads the modules
    it needs beside it the same way)."""
    if f"_klr_{name}" not in sys.modules:
        spec = importlib.util.spec_from_file_location(f"_klr_{name}", _module_path(name))
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    return sys.modules[f"_klr_{name}"]


def evaluate(trainer, rows, text_batches):
    """Accuracy (classifier) or mean cross-entropy per completion token
    (causal LM), with `infer`; the rows that fill a short batch are left out."""
    right = total = 0.0
    for batch, count in text_batches.batches(rows, trainer.metadata["batch_size"]):
        logits = trainer.infer(batch.inputs)[:count].astype(np.float64)
        labels = batch.labels[:count]
        if batch.loss_mask is None:
            right += float((logits.argmax(-1) == labels).sum())
            total += count
            continue
        shifted = logits - logits.max(-1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
        picked = np.take_along_axis(log_probs, labels[..., None], -1)[..., 0]
        right -= float((picked * batch.loss_mask[:count]).sum())
        total += float(batch.loss_mask[:count].sum())
    return right / total


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="train_on_device.py",
        description="Trains the LoRA factors of a trainable .tflite artifact "
        "(klr.export(..., on_device_training=...)) and writes an adapter file.")
    parser.add_argument("artifact", help="the trainable .tflite file")
    parser.add_argument("--train", required=True, help="the training examples, .jsonl")
    parser.add_argument("--eval", default=None, help="examples to evaluate on, .jsonl")
    parser.add_argument("--epochs", type=int, default=3, help="passes over --train (default 3)")
    parser.add_argument("--seed", type=int, default=0, help="the shuffling seed (default 0)")
    parser.add_argument("--out", default="adapter.safetensors",
                        help="the adapter file to write (default adapter.safetensors)")
    parser.add_argument("--threads", type=int, default=None, help="interpreter threads")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error("--epochs must be at least 1")
    load_module("standalone")  # how the modules below find theirs
    trainer_module, text_batches, writer = (
        load_module(n) for n in ("trainer", "text_batches", "adapter_writer"))
    try:
        for path in (args.artifact, args.train, args.eval):
            if path is not None and not os.path.isfile(path):
                raise FileNotFoundError(f"No file at '{path}'.")
        writer.check_target(args.out)
        trainer = trainer_module.OnDeviceTrainer(args.artifact, args.threads)
        metadata = trainer.metadata
        tokenizer = text_batches.load_tokenizer(args.artifact, metadata)
        train = text_batches.rows(tokenizer, metadata, text_batches.read_examples(args.train, metadata))
        held_out = args.eval and text_batches.rows(
            tokenizer, metadata, text_batches.read_examples(args.eval, metadata))
    except (ValueError, FileNotFoundError, ImportError) as error:
        print(f"train_on_device.py: error: {error}", file=sys.stderr)
        return 2
    metric = "accuracy" if metadata["task"] == "classifier" else "eval_loss"
    report = {"task": metadata["task"], "train_rows": len(train), "epochs": []}
    if held_out:
        report[f"{metric}_before"] = evaluate(trainer, held_out, text_batches)
    rng = np.random.default_rng(args.seed)
    for epoch in range(1, args.epochs + 1):
        order = train.take(rng.permutation(len(train)))
        losses = [trainer.train(batch.inputs, batch.labels, batch.loss_mask)
                  for batch, _ in text_batches.batches(order, metadata["batch_size"])]
        report["epochs"].append({"epoch": epoch, "mean_loss": float(np.mean(losses)),
                                 "steps": len(losses)})
        if not args.json:
            print(f"epoch {epoch}: mean loss {np.mean(losses):.4f} ({len(losses)} steps)")
    if held_out:
        report[f"{metric}_after"] = evaluate(trainer, held_out, text_batches)
    try:
        report["bytes"] = writer.write_adapter_file(trainer.save(), metadata, args.out)
    except ValueError as error:  # a factor went NaN or Inf: nothing written
        print(f"train_on_device.py: error: {error}", file=sys.stderr)
        return 1
    report["out"] = args.out
    if args.json:
        print(json.dumps(report))
    else:
        if held_out:
            print(f"{metric}: {report[f'{metric}_before']:.4f} before, "
                  f"{report[f'{metric}_after']:.4f} after")
        print(f"wrote {args.out} ({report['bytes']} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
