"""`route_adapters`: one model serving several tasks in one batch.

The routed model takes one more input, `adapter_index` `(batch,)` int32:
row `i` runs with adapter `adapter_names[adapter_index[i]]`, and an index
outside the list gives the base model for that row. Its outputs equal
running each row alone with its own adapter (`set_adapter`), and it exports
with the index as an input: the adapters stay unmerged in the artifact, so
an app picks the task per request.
"""

import keras

from keras_lowrank.adapters.named import adapter_names as names_of
from keras_lowrank.layers.routing import routing
from keras_lowrank.surgery import checks
from keras_lowrank.surgery import layer_paths
from keras_lowrank.surgery import rewriting

INDEX = "adapter_index"


@keras.saving.register_keras_serializable(package="keras_lowrank")
class AdapterRouter(keras.layers.Layer):
    """Calls `model` with each row routed to the adapter its index names.

    Args:
        model: keras.Model holding named adapters.
        adapter_names: list of str. Index value `k` stands for
            `adapter_names[k]`.
        **kwargs: base layer arguments.
    """

    def __init__(self, model, adapter_names, **kwargs):
        super().__init__(**kwargs)
        self.model = model
        self.adapter_names = list(adapter_names)

    def call(self, inputs, adapter_index):
        index = keras.ops.cast(keras.ops.reshape(adapter_index, (-1,)), "int32")
        with routing(index, self.adapter_names):
            return self.model(inputs)

    def get_config(self):
        return {
            **super().get_config(),
            "model": keras.saving.serialize_keras_object(self.model),
            "adapter_names": self.adapter_names,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        model = keras.saving.deserialize_keras_object(config.pop("model"))
        return cls(model, **config)


def route_adapters(model, adapter_names):
    """A new model whose input `adapter_index` picks an adapter per row.

    Args:
        model: keras.Model with named adapters (plain LoRA; a DoRA
            magnitude scales whole outputs, so it cannot be chosen per
            row). Left untouched: the routed model holds a copy.
        adapter_names: list of str: index `k` means `adapter_names[k]`.

    Returns:
        A Functional `keras.Model` with the inputs of `model` plus
        `adapter_index` `(batch,)` int32. `klr.export` keeps its adapters
        unmerged.

    Raises:
        ValueError: an unknown or repeated name, a DoRA adapter, or a model
            whose inputs are not named (a dict of inputs is needed).

    Example:
    ```python
    router = klr.route_adapters(model, ["sentiment", "topic"])
    logits = router.predict({**token_inputs, "adapter_index": np.array([0, 1, 1])})
    klr.export(router, "multi_task.tflite", "tflite",
               sample_inputs={**token_inputs, "adapter_index": np.array([0, 1, 1])})
    ```
    """
    checks.check_model(model, "route_adapters")
    names = list(adapter_names) if not isinstance(adapter_names, str) else [adapter_names]
    known = names_of(model)
    unknown = [n for n in names if n not in known]
    if unknown or not names or len(set(names)) != len(names):
        raise ValueError(
            "route_adapters expected distinct names of the model's adapters. "
            f"Received: adapter_names={adapter_names!r}. Its adapters: {known}"
        )
    for path, layer in layer_paths.layer_paths(model).items():
        for name in names:
            if name in getattr(layer, "adapter_names", ()) and layer.view(name).spec.variant != "lora":
                raise ValueError(
                    f"route_adapters: adapter {name!r} on layer '{path}' is a "
                    f"{layer.view(name).spec.variant!r} adapter; only plain LoRA "
                    "adapters can be chosen per row."
                )
    if not isinstance(model.input, dict) or INDEX in model.input:
        raise ValueError(
            f"route_adapters needs a model whose inputs are a dict of named "
            f"inputs without {INDEX!r} (as keras-hub backbones and tasks "
            f"have). Received inputs: {model.input!r:.200}"
        )
    inner = rewriting.copy_model(model)
    inputs = {
        name: keras.Input(shape=tensor.shape[1:], dtype=tensor.dtype, name=name)
        for name, tensor in model.input.items()
    }
    index = keras.Input(shape=(), dtype="int32", name=INDEX)
    outputs = AdapterRouter(inner, names, name="adapter_router")(inputs, index)
    router = keras.Model({**inputs, INDEX: index}, outputs, name=f"{model.name}_routed")
    return router


def is_routed(model):
    """Whether `model` picks adapters per row (export keeps them unmerged)."""
    return any(
        isinstance(layer, AdapterRouter)
        for layer in layer_paths.layer_paths(model).values()
    )
