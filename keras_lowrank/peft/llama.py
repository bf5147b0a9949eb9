"""Llama: PEFT module names of Hugging Face `LlamaModel` on keras-hub's `LlamaBackbone`.

Built from keras-hub's converter (`convert_llama3.py`, which `from_preset`
uses for `model_type: llama`, SmolLM2 too): `q_proj`, `k_proj`, `v_proj`
weights `(heads * head_dim, hidden)` are transposed and reshaped to
`(hidden, heads, head_dim)` (key and value with the key-value heads), and
`o_proj` to `(heads, head_dim, hidden)`, without permuting heads or rotary
halves; the MLP weights are transposed. So every kernel's matrix view is the
HF `(in, out)` matrix. `LlamaForCausalLM` nests the model under `model.`;
its `lm_head` is keras-hub's reversible token embedding, which holds no
separate adapter.
"""

from keras_lowrank.peft.name_map import FamilyMap

_BLOCK = "transformer_layer_{i}"
_ATTENTION = _BLOCK + "/self_attention"

FAMILY = FamilyMap(
    name="llama",
    model_type="llama",
    backbone_class="LlamaBackbone",
    layer_modules={
        "layers.{i}.self_attn.q_proj": (_ATTENTION + "/query",),
        "layers.{i}.self_attn.k_proj": (_ATTENTION + "/key",),
        "layers.{i}.self_attn.v_proj": (_ATTENTION + "/value",),
        "layers.{i}.self_attn.o_proj": (_ATTENTION + "/attention_output",),
        "layers.{i}.mlp.gate_proj": (_BLOCK + "/feedforward_gate_dense",),
        "layers.{i}.mlp.up_proj": (_BLOCK + "/feedforward_intermediate_dense",),
        "layers.{i}.mlp.down_proj": (_BLOCK + "/feedforward_output_dense",),
    },
    task_prefix="model.",
    # keras-hub's converter does not port `rms_norm_eps`.
    preset_arguments={"layer_norm_epsilon": "rms_norm_eps"},
)
