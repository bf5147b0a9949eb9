"""The names inside an adapter file: its format tag and its tensor keys."""

FORMAT = "keras_lowrank.adapters/1"
DEFAULT = "default"


def tensor_key(layer_path, weight_name, adapter_name):
    """`<path>/lora_a` for the default adapter, `<path>/lora_a.<name>` else."""
    suffix = "" if adapter_name == DEFAULT else f".{adapter_name}"
    return f"{layer_path}/{weight_name}{suffix}"


def weight_name(weight):
    """The last part of a weight's path: `lora_a`, `lora_b`, `lora_magnitude`."""
    return weight.path.rsplit("/", 1)[-1]
