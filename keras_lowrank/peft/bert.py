"""BERT: PEFT module names of Hugging Face `BertModel` on keras-hub's `BertBackbone`.

Built from keras-hub's converter (`keras_hub/src/utils/transformers/
convert_bert.py`): each HF `Linear` weight `(out, in)` is ported as its
transpose, reshaped to the keras-hub kernel, so the kernel's matrix view
(`KernelLayout`) is the HF `(in, out)` matrix itself: query, key and value
`(hidden, heads, head_dim)` flatten their output axes in HF's
`head * head_dim + d` order, the attention output `(heads, head_dim,
hidden)` its input axes likewise. `BertForSequenceClassification` nests the
encoder under `bert.` and adds `classifier`, keras-hub's `logits` layer of a
`BertTextClassifier`.
"""

from keras_lowrank.peft.name_map import FamilyMap

_BLOCK = "transformer_layer_{i}"
_ATTENTION = _BLOCK + "/self_attention_layer"

FAMILY = FamilyMap(
    name="bert",
    model_type="bert",
    backbone_class="BertBackbone",
    layer_modules={
        "encoder.layer.{i}.attention.self.query": (_ATTENTION + "/query",),
        "encoder.layer.{i}.attention.self.key": (_ATTENTION + "/key",),
        "encoder.layer.{i}.attention.self.value": (_ATTENTION + "/value",),
        "encoder.layer.{i}.attention.output.dense": (_ATTENTION + "/attention_output",),
        "encoder.layer.{i}.intermediate.dense": (_BLOCK + "/feedforward_intermediate_dense",),
        "encoder.layer.{i}.output.dense": (_BLOCK + "/feedforward_output_dense",),
    },
    model_modules={"pooler.dense": ("pooled_dense",)},
    head_modules={"classifier": ("logits",)},
    task_prefix="bert.",
)
