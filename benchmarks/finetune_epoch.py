"""Child: one real epoch of the `finetune` pipeline, its FLOPs and CPU time.

Runs `keras_lowrank.finetune.finetune` as `make demo` does (MiniLM, LoRA
rank 8 on query and value, MR polarity, AdamW, batches padded to their
longest row) for one epoch without export, then counts the epoch's FLOPs
from the batches it trained on: the same seed gives the same batch order
and lengths (`batching.epoch_batches`), each step counted by
`flops.step_flops("klr_lora", rows, length)`, each validation batch by
`flops.forward_flops`. The epoch's time is the report's `train_seconds`
(training steps, then validation; the first steps trace the graph); CPU
time per stage is the report's `stage_cpu_seconds`; `test_accuracy` is the
report's (its evaluate stage: Keras, float32, on the first `test_examples`
test rows). Like the command line, the child first applies
`finetune.allocator.keep_freed_memory`.
"""

import os
import shutil

import numpy as np

from benchmarks import child
from benchmarks import flops


def epoch_shapes(lengths, batch_size, seed, full):
    """`(rows, padded length)` of each batch of the first training epoch."""
    from keras_lowrank.finetune import batching

    rng = np.random.default_rng(seed)
    return [(len(rows), min(batching.batch_length(lengths[rows]), full))
            for rows in batching.epoch_batches(lengths, batch_size, rng)]


def evaluation_shapes(lengths, batch_size, full):
    """`(rows, padded length)` of each validation batch."""
    from keras_lowrank.finetune import batching

    order = np.argsort(lengths, kind="stable")
    return [(len(rows), min(batching.batch_length(lengths[rows]), full))
            for rows in (order[i:i + batch_size]
                         for i in range(0, len(order), batch_size))]


def options(settings, out):
    from keras_lowrank.finetune import FinetuneOptions

    return FinetuneOptions(
        out=out, cache_dir=".cache", epochs=1, export=(), phone_artifacts=(),
        verbose=0,
        batch_size=settings.batch_size,
        sequence_length=settings.train_sequence_length,
        max_train_examples=settings.train_examples,
        max_eval_examples=settings.test_examples,
        rank=settings.rank, seed=settings.seed,
    )


def measure(settings, config, work):
    import keras_hub

    import keras_lowrank as klr
    from keras_lowrank.finetune import allocator
    from keras_lowrank.finetune import finetune
    from keras_lowrank.finetune import training

    malloc_settings = allocator.keep_freed_memory()  # as the command line

    out = os.path.join(work, "finetune_epoch_run")
    shutil.rmtree(out, ignore_errors=True)
    run_options = options(settings, out)
    report = finetune(run_options, log=lambda line: print(line, flush=True))
    shutil.rmtree(out, ignore_errors=True)

    # The token ids the run trained on, again: only their lengths matter.
    data = training.load_data(run_options)
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor.from_preset(
        klr.presets.minilm_path(), sequence_length=run_options.sequence_length)
    lengths = {}
    for split, limit in (("train", run_options.max_train_examples),
                         ("validation", run_options.max_eval_examples)):
        inputs, _ = training.tokenize(preprocessor, getattr(data, split), limit)
        lengths[split] = inputs["padding_mask"].astype(bool).sum(axis=1)
    full = run_options.sequence_length
    train_shapes = epoch_shapes(lengths["train"], run_options.batch_size,
                                run_options.seed, full)
    eval_shapes = evaluation_shapes(lengths["validation"], run_options.batch_size, full)
    train_flops = flops.batches_flops("klr_lora", train_shapes, run_options.rank)
    eval_flops = sum(flops.forward_flops(rows, length, run_options.rank)
                     for rows, length in eval_shapes)
    return {
        "train_seconds": report["train_seconds"],
        "stage_seconds": report["stage_seconds"],
        "stage_cpu_seconds": report["stage_cpu_seconds"],
        "total_seconds": report["total_seconds"],
        "precision": report["precision"],
        "test_accuracy": report["test_accuracy"],
        "test_examples": report["num_examples"]["test"],
        "steps": len(train_shapes),
        "train_flops": train_flops,
        "validation_flops": eval_flops,
        "epoch_flops": train_flops + eval_flops,
        "padded_tokens": int(sum(rows * length for rows, length in train_shapes)),
        "real_tokens": int(lengths["train"].sum()),
        "validation_padded_tokens": int(sum(r * n for r, n in eval_shapes)),
        "examples": {"train": int(len(lengths["train"])),
                     "validation": int(len(lengths["validation"]))},
        "sequence_length": full,
        "batch_size": run_options.batch_size,
        "malloc_settings": malloc_settings,
    }


if __name__ == "__main__":
    child.main(measure)
