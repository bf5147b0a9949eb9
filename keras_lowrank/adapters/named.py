"""Several named adapters in one model, with PEFT's names for the verbs.

`add_adapters(model, config, adapter_name="task_b")` adds an adapter beside
those a model holds. These choose which act (`set_adapter`), switch them all
off for a moment (`disable_adapters`), and remove one (`delete_adapter`).
`add_weighted_adapter` builds a new adapter out of existing ones.

`set_adapter` and `disable_adapters` change which adapters act in `model`
itself, as their names say; `delete_adapter` and `add_weighted_adapter`
return a new model, like every other rewrite in keras_lowrank.
"""

import contextlib

from keras_lowrank.adapters.adapted_model import adapters
from keras_lowrank.adapters.adapted_model import rebuild_adapter
from keras_lowrank.surgery import checks
from keras_lowrank.surgery import model_state
from keras_lowrank.surgery import rewriting


def adapter_names(model):
    """The names of the adapters of `model`, in the order they were added."""
    names = []
    for layer in adapters(model).values():
        names += [n for n in layer.adapter_names if n not in names]
    return names


def active_adapters(model):
    """The names of the adapters that act in `model`, in order."""
    names = []
    for layer in adapters(model).values():
        names += [n for n in layer.active if n not in names]
    return names


def set_adapter(model, names):
    """Makes the adapters `names` (one name or a list) the ones that act.

    Several active plain-LoRA adapters add up. A layer that has none of
    `names` gives its base layer's outputs. Only active adapters train
    (compile again after changing them).

    Args:
        model: keras.Model with named adapters (changed in place).
        names: str or list of str.

    Raises:
        ValueError: an unknown name (the message lists the adapters), or
            several active adapters on a layer where one is not plain LoRA.

    Example:
    ```python
    model = klr.add_adapters(model, rank=8)                          # "default"
    model = klr.add_adapters(model, rank=8, adapter_name="task_b")
    klr.set_adapter(model, "default")
    klr.set_adapter(model, ["default", "task_b"])                    # both add up
    ```
    """
    names = check_adapter_names(model, names, "set_adapter")
    for layer in adapters(model).values():
        layer.set_active([n for n in names if n in layer.adapter_names])
    _forget_compiled_functions(model)


@contextlib.contextmanager
def disable_adapters(model):
    """Inside the block, `model` gives its base model's outputs, bit for bit.

    Example:
    ```python
    with klr.disable_adapters(model):
        base_logits = model.predict(x)
    ```
    """
    found = adapters(model)
    if not found:
        raise ValueError(
            f"disable_adapters: model '{getattr(model, 'name', model)}' holds "
            "no adapter."
        )
    before = {path: layer.active for path, layer in found.items()}
    try:
        for layer in found.values():
            layer.set_active([])
        _forget_compiled_functions(model)
        yield model
    finally:
        for path, layer in found.items():
            layer.set_active(before[path])
        _forget_compiled_functions(model)


def _forget_compiled_functions(model):
    """`predict`, `evaluate` and `fit` traced the old choice: trace again."""
    for name in ("predict_function", "test_function", "train_function"):
        if hasattr(model, name):
            setattr(model, name, None)


def delete_adapter(model, name):
    """A new model without the adapter `name`.

    A layer left with no adapter becomes its plain base layer again. The
    remaining adapters keep their values and their active state.

    Raises:
        ValueError: `model` has no adapter called `name`.
    """
    (name,) = check_adapter_names(model, [name], "delete_adapter")

    def replace(path, layer):
        if not _holds(layer, name):
            return None
        kept = {n: layer.view(n).spec for n in layer.adapter_names if n != name}
        if not kept:
            return _unwrapped(layer)
        return rebuild_adapter(layer, kept, [n for n in layer.active if n != name])

    new, _ = rewriting.rewrite_model(model, replace)
    configs = model_state.lora_configs(model)
    configs.pop(name, None)
    model_state.set_lora_configs(new, configs)
    return new


def _unwrapped(layer):
    base = layer.layer
    base.trainable = False
    return base


def _holds(layer, name):
    return name in getattr(layer, "adapter_names", ())


def check_adapter_names(model, names, function):
    """`names` (one name or several) as a list, each an adapter of `model`."""
    checks.check_model(model, function)
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise ValueError(
            f"{function} expected an adapter name or a list of adapter names. "
            f"Received: {names!r}. Adapters of model '{model.name}': "
            f"{adapter_names(model)}"
        )
    names = list(names)
    known = adapter_names(model)
    unknown = [n for n in names if n not in known]
    if unknown or not names and function != "set_adapter":
        raise ValueError(
            f"{function}: model '{model.name}' has no adapter named "
            f"{unknown[0] if unknown else None!r}. Its adapters: {known}"
        )
    return names
