"""Measured study: SVD compression of all-MiniLM-L6-v2's feed-forward layers.

1. Train a MiniLM sentiment classifier on MR (LoRA rank 8 on query/value, the
   head in full), merge it: accuracy "before compression".
2. `klr.compress(merged, targets=["re:.*feedforward_.*"], param_ratio=0.5)`:
   the 12 feed-forward kernels (384x1536 and 1536x384) become rank-153
   factors holding half their parameters: accuracy "right after".
3. Fine-tune only the factors and the head briefly: accuracy "after".
4. TFLite of the merged and of the compressed model (float, and the
   compressed one dynamic-range quantized too): sizes, latency.

Run (after `make install fetch`), ~10 minutes on 2 CPU cores:
    .venv/bin/python examples/compress_minilm.py
Prints the figures and writes runs/compression/results.json and
runs/compression/spectrum.png. `--help` lists the knobs.
"""

import argparse
import json
import os
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402

import keras_lowrank as klr  # noqa: E402
from keras_lowrank.compression.compress import compress  # noqa: E402
from keras_lowrank.data import load_mr_polarity  # noqa: E402
from keras_lowrank.exporters import export  # noqa: E402
from keras_lowrank.svd import plot_spectrum  # noqa: E402

FEEDFORWARD = "re:.*feedforward_.*"


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="runs/compression")
    parser.add_argument("--train-size", type=int, default=0,
                        help="train sentences used (0: the whole train split)")
    parser.add_argument("--test-size", type=int, default=0,
                        help="test sentences used (0: the whole test split)")
    parser.add_argument("--epochs", type=int, default=2, help="LoRA epochs")
    parser.add_argument("--lr", type=float, default=1e-3, help="LoRA learning rate")
    parser.add_argument("--param-ratio", type=float, default=0.5)
    parser.add_argument("--finetune-epochs", type=int, default=1)
    parser.add_argument("--finetune-lr", type=float, default=3e-4)
    parser.add_argument("--merged", metavar="PATH.keras",
                        help="reuse the merged classifier saved there by an "
                        "earlier run (trained and saved there when missing)")
    parser.add_argument("--no-export", action="store_true")
    return parser.parse_args()


def sentences(split, limit=0):
    texts, labels = [], []
    for text, label in split.as_numpy_iterator():
        texts.append(text.decode())
        labels.append(int(label))
    if limit:
        texts, labels = texts[:limit], labels[:limit]
    return np.array(texts), np.array(labels)


def accuracy(model, texts, labels):
    logits = model.predict(texts, batch_size=64, verbose=0)
    return float(np.mean(np.argmax(logits, axis=-1) == labels))


def train(model, texts, labels, epochs, lr):
    model.compile(
        optimizer=keras.optimizers.AdamW(lr),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    start = time.perf_counter()
    model.fit(texts, labels, batch_size=32, epochs=epochs, verbose=2)
    return time.perf_counter() - start


def main():
    args = parse_args()
    os.makedirs(args.out, exist_ok=True)
    keras.utils.set_random_seed(0)
    data = load_mr_polarity(cache_dir=".cache")
    train_texts, train_labels = sentences(data.train, args.train_size)
    test_texts, test_labels = sentences(data.test, args.test_size)
    results = {"train_sentences": len(train_texts), "test_sentences": len(test_texts),
               "args": vars(args)}

    # === 1. A trained classifier, merged ===
    if args.merged and os.path.exists(args.merged):
        merged = keras.models.load_model(args.merged)
        print(f"reusing the merged classifier {args.merged}")
    else:
        classifier = keras_hub.models.BertTextClassifier.from_preset(
            klr.presets.minilm_path(), num_classes=2)
        classifier.preprocessor.sequence_length = 64
        adapted = klr.add_adapters(classifier, rank=8, alpha=16)
        results["lora_seconds"] = train(adapted, train_texts, train_labels,
                                        args.epochs, args.lr)
        merged = klr.merge_adapters(adapted)
        if args.merged:
            merged.save(args.merged)
    results["accuracy_before"] = accuracy(merged, test_texts, test_labels)
    print(f"accuracy before compression: {results['accuracy_before']:.4f}")

    # === 2. Compress the feed-forward layers ===
    compressed, report = compress(merged, targets=[FEEDFORWARD],
                                  param_ratio=args.param_ratio, train_only_factors=True)
    print(report)
    results["compression"] = report.to_dict()
    results["accuracy_right_after"] = accuracy(compressed, test_texts, test_labels)
    print(f"accuracy right after compression: {results['accuracy_right_after']:.4f}")
    spectrum = os.path.join(args.out, "spectrum.png")
    plot_spectrum(merged, spectrum, targets=FEEDFORWARD, ranks=report.ranks)
    print(f"spectra -> {spectrum}")

    # === 3. Fine-tune the factors (and the head) ===
    trainable, total = klr.parameter_counts(compressed)
    results["finetune_trainable_params"] = trainable
    results["finetune_seconds"] = train(compressed, train_texts, train_labels,
                                        args.finetune_epochs, args.finetune_lr)
    results["accuracy_after_finetune"] = accuracy(compressed, test_texts, test_labels)
    print(f"accuracy after fine-tuning {trainable:,} of {total:,} parameters: "
          f"{results['accuracy_after_finetune']:.4f}")

    # === 4. TFLite: float, and dynamic-range on top of the factors ===
    if not args.no_export:
        for name, model, quantize in (("merged", merged, None),
                                      ("compressed", compressed, None),
                                      ("compressed_dynamic", compressed, "dynamic")):
            exported = export(model, os.path.join(args.out, f"{name}.tflite"),
                              "tflite", quantize=quantize)
            print(exported)
            results[f"tflite_{name}"] = {
                "size_bytes": exported.size_bytes,
                "max_abs_diff": exported.max_abs_diff,
                "latency_ms": exported.latency_ms,
            }

    path = os.path.join(args.out, "results.json")
    with open(path + ".tmp", "w") as file:
        json.dump(results, file, indent=2)
    os.replace(path + ".tmp", path)
    summary = {k: v for k, v in results.items() if k.startswith(("accuracy", "tflite"))}
    print(json.dumps(summary, indent=2))
    print(f"results -> {path}")


if __name__ == "__main__":
    main()
