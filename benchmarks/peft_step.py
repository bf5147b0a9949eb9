"""Child: PEFT LoRA training-step time on the same weights, in PyTorch.

`BertForSequenceClassification` from the MiniLM folder with PEFT LoRA
(rank, alpha = rank, query and value, task SEQ_CLS: the classifier head
trains too), AdamW, the same token ids as the Keras children. Imports no
TensorFlow: it may run under another interpreter (`run.py --torch-python`).
"""

import importlib.util
import os

import numpy as np

from benchmarks import child

BATCH_FILE = "batch.npz"


def minilm_folder():
    """`keras_lowrank.models.presets.minilm_path()`, without importing the package.

    The package imports Keras and TensorFlow, which would inflate this
    process's peak RSS and may not exist under the torch interpreter.
    """
    path = os.path.join(os.path.dirname(os.path.dirname(__file__)),
                        "keras_lowrank", "models", "presets.py")
    spec = importlib.util.spec_from_file_location("_klr_presets", path)
    presets = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(presets)
    return presets.minilm_path()


def measure(settings, config, work):
    import peft
    import torch
    import transformers

    torch.manual_seed(settings.seed)
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    with np.load(os.path.join(work, BATCH_FILE)) as data:
        batch = {
            "input_ids": torch.from_numpy(data["token_ids"].astype("int64")),
            "token_type_ids": torch.from_numpy(data["segment_ids"].astype("int64")),
            "attention_mask": torch.from_numpy(data["padding_mask"].astype("int64")),
            "labels": torch.from_numpy(data["labels"].astype("int64")),
        }
    model = transformers.BertForSequenceClassification.from_pretrained(
        minilm_folder(), num_labels=2
    )
    model = peft.get_peft_model(model, peft.LoraConfig(
        r=settings.rank, lora_alpha=settings.rank,
        target_modules=["query", "value"], task_type="SEQ_CLS",
    ))
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=settings.lora_learning_rate)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        return loss

    rss_before = child.current_rss_bytes()
    for _ in range(settings.warmup_steps):
        step()
    losses = []
    seconds, cpu = child.time_steps(lambda: losses.append(step()), settings.steps)
    loss = losses[-1]
    return {
        "config": config,
        "trainable_params": int(sum(p.numel() for p in trainable)),
        "total_params": int(sum(p.numel() for p in model.parameters())),
        "step": child.summarize(seconds),
        "step_seconds": seconds,
        "step_cpu_seconds": cpu,
        "final_loss": float(loss),
        "rss_after_load_bytes": rss_before,
        "batch_shape": list(batch["input_ids"].shape),
        "torch_threads": torch.get_num_threads(),
        "attention": getattr(model.config, "_attn_implementation", None),
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "peft": peft.__version__,
        },
    }


if __name__ == "__main__":
    child.main(measure)
