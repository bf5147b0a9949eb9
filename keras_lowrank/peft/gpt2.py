"""GPT-2: PEFT module names of Hugging Face `GPT2Model` on keras-hub's `GPT2Backbone`.

Built from keras-hub's converter (`convert_gpt2.py`). GPT-2's layers are
`Conv1D`s whose weights are stored `(in, out)` already (PEFT's
`fan_in_fan_out=True`); keras-hub reshapes them without a transpose, so the
matrix views are those `(in, out)` matrices. The fused `attn.c_attn`
`(hidden, 3 * hidden)` is split by output columns into keras-hub's separate
query, key and value layers, in that order; a LoRA on it, `x·Aᵀ·Bᵀ` with
`lora_B` `(3 * hidden, r)`, splits exactly: each of query, key and value
gets the same `A` and its third of `B`'s rows (DoRA too: its norm is per
output column). `GPT2LMHeadModel` nests the model under `transformer.`.
"""

from keras_lowrank.peft.name_map import FamilyMap

_BLOCK = "transformer_layer_{i}"
_ATTENTION = _BLOCK + "/self_attention"

FAMILY = FamilyMap(
    name="gpt2",
    model_type="gpt2",
    backbone_class="GPT2Backbone",
    layer_modules={
        "h.{i}.attn.c_attn": (
            _ATTENTION + "/query", _ATTENTION + "/key", _ATTENTION + "/value",
        ),
        "h.{i}.attn.c_proj": (_ATTENTION + "/attention_output",),
        "h.{i}.mlp.c_fc": (_BLOCK + "/feedforward_intermediate_dense",),
        "h.{i}.mlp.c_proj": (_BLOCK + "/feedforward_output_dense",),
    },
    task_prefix="transformer.",
    fan_in_fan_out=True,
)
