"""How much a quantized frozen base costs SmolLM2 before any training.

Next-token loss (mean negative log-likelihood per token) of
SmolLM2-135M-Instruct on the first 64 MR sentences (raw text, at most 48
tokens each), with the frozen base held in float32 and in Keras' int8 /
int4 forms, from `klr.add_adapters(..., targets="all-linear")` (B = 0, so
the adapters add nothing yet), and the bytes of weights each holds against
the float base. Rows:

- `int8 all`, `int4 all`: `quantize_frozen="all"`, the tied token table
  and output head quantized too (int8 under the int4 base), int4 in groups
  of 64 input values;
- `int4 linear`: `base_quantization="int4"` on every linear layer, the
  token table float;
- `int4 all, groups of 128, int4 table` (before 2026-12-07): Keras' default
  int4 groups, and the table in int4 as well;
- `int4 all, groups of 32`: smaller groups (more bytes);
- `int4 all, GPTQ`: as `int4 all`, the int4 kernels fitted by GPTQ
  (`add_adapters(calibration=...)`) to 128 other MR sentences (rows 200 to
  327, at most 64 tokens each), not to the 64 the loss is measured on.

Run (after `make install fetch`), a few minutes on 2 cores:
    .venv/bin/python examples/quantized_base_loss.py
"""

import csv

import numpy as np
from tokenizers import Tokenizer

import keras_lowrank as klr
from keras_lowrank.data.fetch import mr_polarity_path
from keras_lowrank.layers import quantized_base
from keras_lowrank.layers.quantized_base import quantize_layer
from keras_lowrank.models import presets

SENTENCES = 64
MAX_TOKENS = 48
CALIBRATION_ROWS = (200, 328)
CALIBRATION_TOKENS = 64
# label, add_adapters options, int4 group size, and the table's mode if set
# apart ("int8", "int4") or "gptq" to fit the int4 kernels to calibration rows
SETUPS = (
    ("int8 all", dict(base_quantization="int8", quantize_frozen="all"), 64, None),
    ("int4 all", dict(base_quantization="int4", quantize_frozen="all"), 64, None),
    ("int4 linear", dict(base_quantization="int4"), 64, None),
    ("int4 all, groups of 128, int4 table", dict(base_quantization="int4"), 128, "int4"),
    ("int4 all, groups of 32", dict(base_quantization="int4", quantize_frozen="all"), 32, None),
    ("int4 all, GPTQ", dict(base_quantization="int4", quantize_frozen="all"), 64, "gptq"),
)


def batch(cache_dir=".cache", rows=(0, SENTENCES), max_tokens=MAX_TOKENS):
    """Token ids and padding mask of MR sentences `rows` (the first
    `SENTENCES` by default)."""
    with open(mr_polarity_path(cache_dir), encoding="utf-8-sig") as file:
        texts = [row[1] for row in csv.reader(file)][slice(*rows)]
    tokenizer = Tokenizer.from_file(f"{presets.smollm2_path()}/tokenizer.json")
    ids = [tokenizer.encode(text).ids[:max_tokens] for text in texts]
    token_ids = np.zeros((len(ids), max(map(len, ids))), "int32")
    mask = np.zeros(token_ids.shape, bool)
    for row, sentence in enumerate(ids):
        token_ids[row, :len(sentence)] = sentence
        mask[row, :len(sentence)] = True
    return {"token_ids": token_ids, "padding_mask": mask}


def next_token_loss(model, inputs):
    """Mean negative log-likelihood of each real token after the first."""
    logits = np.asarray(model(inputs), "float64")[:, :-1]
    logits -= logits.max(-1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    targets = inputs["token_ids"][:, 1:, None]
    picked = np.take_along_axis(log_probs, targets, -1)[..., 0]
    mask = inputs["padding_mask"][:, 1:]
    return float(-(picked * mask).sum() / mask.sum())


def main():
    inputs = batch()
    base = presets.smollm2_causal_lm(preprocessor=None)
    float_bytes = klr.weight_bytes(base)
    print(f"float32: loss {next_token_loss(base, inputs):.3f}", flush=True)
    for label, options, group, table in SETUPS:
        quantized_base.INT4_BLOCK_SIZE = group
        if table == "gptq":
            options = dict(options, calibration=batch(
                rows=CALIBRATION_ROWS, max_tokens=CALIBRATION_TOKENS))
        model = klr.add_adapters(base, rank=8, targets="all-linear", **options)
        if table in ("int8", "int4"):
            quantize_layer(model.backbone.token_embedding, table)
        print(f"{label}: loss {next_token_loss(model, inputs):.3f}, weights "
              f"{klr.weight_bytes(model) / float_bytes:.3f}x", flush=True)


if __name__ == "__main__":
    main()
