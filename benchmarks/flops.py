"""FLOPs of a BERT text-classifier step, counted once (analytic).

Counting rules, for every configuration:
- Only matrix products count, at 2 FLOPs per multiply-add: the six
  projections of each block (query, key, value, attention output,
  feed-forward in and out), the two attention products (Q·Kᵀ, A·V), the
  pooler and the head on the [CLS] row, and the LoRA factors. Embedding
  lookups, softmax, GELU, layer norms, dropout and the optimizer are left
  out (together a few percent of a step's arithmetic, none of it GEMM).
- Forward: each product once.
- Backward of `Y = X·W`: the input gradient `dY·Wᵀ` costs one forward and
  is counted for every product (also in the first block, where a LoRA step
  needs none for query, key and value: ~2% of its step); the weight
  gradient `Xᵀ·dY` costs
  one more forward and is counted only for a trainable `W`. So a frozen
  kernel costs 2 forwards per step and a trained one 3; the attention
  products, whose two operands are both activations, cost 3.
- LoRA (keras_lowrank, PEFT): `x·A` then `·B` beside the frozen kernel,
  both factors trained: 3 forwards of `2·T·(d_in·r + r·d_out)`.
- keras-hub `enable_lora`: the kernel `W + A·B·s` is rebuilt each step
  (`d_in·d_out·r` multiply-adds, 3 forwards with its backward), then used
  as a trained kernel: the adapted projections cost 3 forwards, like full
  fine-tuning's.

With T = batch·seq tokens, H hidden, I intermediate, L blocks, r rank,
n adapted projections per block (all H×H) and C classes, one forward is
    2·T·(4·H² + 2·H·I)·L  +  2·2·batch·seq²·H·L  +  2·batch·(H² + H·C)
and the steps are, by configuration (dense = the first term, attention the
second, pooler 2·batch·H², head 2·batch·H·C, adapters 2·T·2·H·r·n·L,
rebuild 2·H²·r·n·L, adapted 2·T·H²·n·L):
    full        3·dense + 3·attention + 3·pooler + 3·head
    klr_lora    2·dense + 3·attention + 2·pooler + 3·head + 3·adapters
    peft_lora   the same as klr_lora
    keras_lora  2·dense + adapted + 3·attention + 2·pooler + 3·head
                + 3·rebuild
"""

import dataclasses

CONFIGS = ("full", "klr_lora", "keras_lora", "peft_lora")


@dataclasses.dataclass(frozen=True)
class BertShape:
    """The sizes of a BERT classifier that its FLOPs depend on.

    Args:
        hidden: int. Hidden size H.
        intermediate: int. Feed-forward size I.
        layers: int. Transformer blocks L.
        classes: int. Outputs of the head C.
        adapted_per_block: int. H×H projections with LoRA in each block
            (query and value: 2).
    """

    hidden: int = 384
    intermediate: int = 1536
    layers: int = 6
    classes: int = 2
    adapted_per_block: int = 2


MINILM = BertShape()


def forward_parts(batch, seq, rank=0, shape=MINILM) -> dict:
    """FLOPs of one forward pass, by part (see the module docstring).

    Args:
        batch: int. Rows.
        seq: int. Tokens per row (padded length).
        rank: int. LoRA rank; 0 for no adapter.
        shape: `BertShape`.

    Returns:
        `{"dense", "attention", "pooler", "head", "adapters", "rebuild",
        "adapted"}`, ints: `adapters` is the factors' forward at `rank`,
        `rebuild` one `A·B` product per adapted kernel, `adapted` the
        adapted projections' share of `dense`.
    """
    h, i, n = shape.hidden, shape.intermediate, shape.adapted_per_block
    tokens = batch * seq
    return {
        "dense": 2 * tokens * (4 * h * h + 2 * h * i) * shape.layers,
        "attention": 2 * 2 * batch * seq * seq * h * shape.layers,
        "pooler": 2 * batch * h * h,
        "head": 2 * batch * h * shape.classes,
        "adapters": 2 * tokens * (h * rank + rank * h) * n * shape.layers,
        "rebuild": 2 * h * h * rank * n * shape.layers,
        "adapted": 2 * tokens * h * h * n * shape.layers,
    }


def forward_flops(batch, seq, rank=0, shape=MINILM) -> int:
    """FLOPs of one forward pass (inference); adapters unmerged at `rank`."""
    part = forward_parts(batch, seq, rank, shape)
    return (part["dense"] + part["attention"] + part["pooler"] + part["head"]
            + part["adapters"])


def step_flops(config, batch, seq, rank=8, shape=MINILM) -> int:
    """FLOPs of one training step (forward + backward) of `config`.

    Args:
        config: str. One of `CONFIGS`.
        batch: int. Rows.
        seq: int. Tokens per row (padded length).
        rank: int. LoRA rank (ignored by "full").
        shape: `BertShape`.

    Raises:
        ValueError: an unknown `config`.
    """
    if config not in CONFIGS:
        raise ValueError(f"Unrecognized config={config!r}. Supported configs "
                         f"are: {list(CONFIGS)}")
    p = forward_parts(batch, seq, rank, shape)
    shared = 3 * p["attention"] + 3 * p["head"]
    if config == "full":
        return 3 * p["dense"] + shared + 3 * p["pooler"]
    if config == "keras_lora":
        return (2 * p["dense"] + p["adapted"] + shared + 2 * p["pooler"]
                + 3 * p["rebuild"])
    return 2 * p["dense"] + shared + 2 * p["pooler"] + 3 * p["adapters"]


def batches_flops(config, shapes, rank=8, shape=MINILM) -> int:
    """FLOPs of training steps on batches of `(rows, padded length)`."""
    return sum(step_flops(config, rows, length, rank, shape) for rows, length in shapes)


def share_of_gemm(flops, seconds, gemm_flops_per_second):
    """`flops / seconds` as a fraction of the machine's GEMM throughput."""
    if not seconds or not gemm_flops_per_second:
        return None
    return flops / seconds / gemm_flops_per_second
