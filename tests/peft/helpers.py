"""Tiny Hugging Face models, their PEFT adapters and keras-hub conversions.

Each family's HF model is built from a config in transformers, saved with
`save_pretrained`, and converted by keras-hub (`from_preset(folder)`), as a
user converts a real checkpoint. BERT runs the tanh GELU on the HF side
(`gelu_pytorch_tanh`), which keras-hub's BERT uses.
"""

import copy

import keras_hub
import numpy as np

torch = None
transformers = None
peft = None

VOCAB = 96
SEQ = 8


def import_torch_stack():
    global torch, transformers, peft
    import peft as peft_
    import torch as torch_
    import transformers as transformers_

    torch, transformers, peft = torch_, transformers_, peft_
    transformers_.logging.set_verbosity_error()
    return torch_, transformers_, peft_


def hf_config(family, **overrides):
    if family == "bert":
        config = transformers.BertConfig(
            vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2,
            num_attention_heads=4, intermediate_size=64,
            max_position_embeddings=32, hidden_act="gelu_pytorch_tanh",
        )
    elif family == "llama":
        config = transformers.LlamaConfig(
            vocab_size=VOCAB, hidden_size=32, intermediate_size=64,
            num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            max_position_embeddings=32, rms_norm_eps=1e-6,
            tie_word_embeddings=False,
        )
    else:
        config = transformers.GPT2Config(
            vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=32,
            bos_token_id=0, eos_token_id=0,
        )
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


# The HF class whose checkpoint keras-hub converts, and the base / task
# classes PEFT adapters go on.
SAVED_CLASS = {"bert": "BertModel", "llama": "LlamaForCausalLM", "gpt2": "GPT2LMHeadModel"}
BASE_CLASS = {"bert": "BertModel", "llama": "LlamaModel", "gpt2": "GPT2Model"}
TASK_CLASS = {"bert": "BertForSequenceClassification", "llama": "LlamaForCausalLM",
              "gpt2": "GPT2LMHeadModel"}
ALL_LINEAR = {
    "bert": ["query", "key", "value", "dense"],
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "gpt2": ["c_attn", "c_proj", "c_fc"],
}


def save_hf_checkpoint(family, folder, seed=0, **overrides):
    torch.manual_seed(seed)
    config = hf_config(family, **overrides)
    model = getattr(transformers, SAVED_CLASS[family])(config)
    with torch.no_grad():  # livelier than the 0.02 init: adapters then matter
        for name, parameter in model.named_parameters():
            if parameter.dim() == 2:
                parameter.normal_(0, 0.08)
    model.save_pretrained(folder)
    return folder


def hf_model(family, folder, task=False, **kwargs):
    name = TASK_CLASS[family] if task else BASE_CLASS[family]
    model = getattr(transformers, name).from_pretrained(folder, **kwargs)
    return model.eval()


def keras_backbone(folder):
    return keras_hub.models.Backbone.from_preset(str(folder))


def randomize_lora(peft_model, seed=0, std=0.15):
    """Non-zero factors (and magnitudes moved off their init), seeded."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_A" in name or "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * std)
            elif "lora_magnitude" in name:
                noise = torch.rand(parameter.shape, generator=generator) * 0.4 + 0.8
                parameter.mul_(noise)
    return peft_model.eval()


def peft_adapter(family, base_model, folder, seed=0, **config):
    """A PEFT adapter with random non-zero factors on a copy of `base_model`, saved."""
    model = peft.get_peft_model(copy.deepcopy(base_model), peft.LoraConfig(**config))
    randomize_lora(model, seed)
    model.save_pretrained(folder)
    return model


def token_ids(batch=2, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(1, VOCAB, size=(batch, SEQ)).astype("int32")


def keras_inputs(family, ids):
    inputs = {"token_ids": ids, "padding_mask": np.ones_like(ids)}
    if family == "bert":
        inputs["segment_ids"] = np.zeros_like(ids)
    return inputs


def keras_outputs(family, model, ids):
    """The last hidden states of a backbone, the logits of a task."""
    outputs = model(keras_inputs(family, ids), training=False)
    if isinstance(outputs, dict):
        outputs = outputs["sequence_output"]
    return np.asarray(outputs)


def hf_outputs(model, ids):
    with torch.no_grad():
        outputs = model(input_ids=torch.tensor(ids, dtype=torch.long))
    value = outputs.logits if hasattr(outputs, "logits") else outputs.last_hidden_state
    return value.numpy()


def max_diff(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))))


def weights_of(model):
    return [np.array(w) for w in model.weights]


def unchanged(model, before):
    after = weights_of(model)
    return len(after) == len(before) and all(
        np.array_equal(a, b) for a, b in zip(after, before))
