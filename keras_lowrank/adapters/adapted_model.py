"""`add_adapters`: a new model with LoRA on the layers a config names."""



from keras_lowrank.adapters.calibration import CALIBRATED_CLASSES
from keras_lowrank.adapters.calibration import check_calibration
from keras_lowrank.adapters.calibration import input_hessians
from keras_lowrank.adapters.config import LoRAConfig
from keras_lowrank.adapters.targeting import check_patterns_match
from keras_lowrank.adapters.targeting import freeze_all_but
from keras_lowrank.adapters.targeting import is_kept_trainable
from keras_lowrank.adapters.targeting import targeted_paths
from keras_lowrank.adapters.targeting import trainable_patterns
from keras_lowrank.layers import LoRAAdapter
from keras_lowrank.layers import adapter_class_for
from keras_lowrank.layers.quantized_base import frozen_quantization_mode
from keras_lowrank.layers.quantized_base import is_frozen_quantizable
from keras_lowrank.layers.quantized_base import output_head_table
from keras_lowrank.layers.quantized_base import quantized_copy
from keras_lowrank.surgery import checks
from keras_lowrank.surgery import layer_paths
from keras_lowrank.surgery import model_state
from keras_lowrank.surgery import rewriting


def add_adapters(model, config=None, *, adapter_name=None, calibration=None, **overrides):
    """A new model with LoRA adapters on the layers `config` targets.

    Adapters go on every matched layer of a kind adapters exist for
    (`klr.layers.supported_classes()`: Dense, EinsumDense, Embedding,
    Conv1D/2D/3D, DepthwiseConv1D/2D), at any depth (inside keras-hub
    transformer blocks and attention layers too). `targets="all-linear"`
    picks Dense and EinsumDense only, as PEFT's: convolutions and
    embeddings are adapted when named.
    Everything else is frozen, except the layers `config.trainable` keeps
    trainable (for a keras-hub task, its head). The input model is untouched:
    its weights, its layers' `trainable` flags and its layer objects.

    Args:
        model: keras.Model. A Functional or Sequential model, or a keras-hub
            Backbone or Task (`BertTextClassifier`, `GPT2CausalLM`, ...).
        config: LoRAConfig. Defaults to `LoRAConfig()` (rank 8 on the
            attention query and value projections).
        adapter_name: str. The adapter's name (PEFT's `adapter_name`).
            Default `"default"`. On a model that holds adapters already, a
            new name adds a second adapter (same or other targets) beside
            them; the new one is then the active and only trainable adapter
            (`klr.set_adapter` chooses again).
        calibration: with `base_quantization="int4"`, inputs of `model` (an
            array, or a dict of arrays such as a keras-hub backbone's, a few
            hundred examples of the fine-tuning data) that the int4 Dense and
            EinsumDense kernels are fitted to: GPTQ rounds each kernel so
            that its outputs on these inputs change least, instead of
            rounding every weight to its nearest step. The kernels are held
            in the same Keras int4 form either way.
        **overrides: fields of `LoRAConfig` that replace `config`'s.

    Returns:
        A new model of the input's class (keras-hub models keep `generate()`,
        their preprocessor and `predict` on raw strings).

    Raises:
        TypeError: `model` is not a keras.Model, or `config` not a LoRAConfig.
        ValueError: the model is not built or has Keras' own LoRA enabled;
            no layer matched `targets` (the message lists the layer paths
            there are); a `trainable`, `rank_pattern` or `alpha_pattern`
            pattern matched no layer at all (a typo: nothing would change);
            a matched layer already holds an adapter, or cannot take one (a
            subclass overriding `call`), or a rank does not fit it (the
            message names the path).

    Warns:
        UserWarning: a `targets` or `exclude` pattern matched nothing, or a
            `rank_pattern` / `alpha_pattern` pattern matched only layers
            that get no adapter.

    Example:
    ```python
    classifier = keras_hub.models.BertTextClassifier.from_preset(
        klr.presets.minilm_path(), num_classes=2)
    model = klr.add_adapters(classifier, rank=8)
    print(klr.trainable_summary(model))
    model.fit(train_data, epochs=2)
    ```
    """
    checks.check_model(model, "add_adapters")
    if config is not None and not isinstance(config, LoRAConfig):
        raise TypeError(
            "add_adapters expected `config` to be a klr.LoRAConfig (or None; "
            "fields can also be passed as keywords, e.g. rank=8). Received: "
            f"config={config!r}"
        )
    config = (config or LoRAConfig()).replace(**overrides)
    paths = layer_paths.layer_paths(model)
    keep_trainable = trainable_patterns(model, config)
    if config.trainable is not None:
        check_patterns_match("trainable", config.trainable, paths, paths)
    targeted = targeted_paths(paths, config, keep_trainable)
    for field in ("rank_pattern", "alpha_pattern"):
        check_patterns_match(field, getattr(config, field), targeted, paths)
    specs = {path: config.spec_for(path) for path in targeted}
    return apply_adapters(
        model, specs, keep_trainable, init=config.init, config=config,
        adapter_name=adapter_name, base_quantization=config.base_quantization,
        quantize_frozen=config.quantize_frozen, calibration=calibration,
    )


def apply_adapters(
    model, specs, keep_trainable, init="default", config=None, adapter_name=None,
    base_quantization=None, quantize_frozen="adapted", calibration=None,
):
    """Wraps the layers at `specs`' paths and freezes the rest.

    Args:
        model: keras.Model. Left untouched.
        specs: `{path: AdapterSpec}`.
        keep_trainable: patterns of layers left fully trainable.
        init: "default" or "pissa".
        config: the LoRAConfig to remember on the result, if any.
        adapter_name: the new adapters' name; None means "default" on a
            model without adapters. On a model with adapters it must be new.
        base_quantization: None, "int8" or "int4": the new adapters' frozen
            kernels are held quantized (`LoRAAdapter.quantize_base`).
        quantize_frozen: "adapted", or "all" to quantize every other frozen
            plain Dense, EinsumDense and Embedding too.
        calibration: inputs of `model` the int4 kernels are fitted to
            (`add_adapters`), or None to round them to nearest.

    Returns:
        The new model.
    """
    checks.check_finite_weights(model, "add_adapters")
    paths = layer_paths.layer_paths(model)
    name = _new_adapter_name(model, paths, adapter_name, init)
    _check_quantization(model, paths, base_quantization)
    check_calibration(calibration, base_quantization)
    for path in specs:
        layer = paths[path]
        if isinstance(layer, LoRAAdapter):
            base = layer.layer
            adapter_class = type(layer)
        else:
            base = layer
            adapter_class = adapter_class_for(layer)
        spec = specs[path]
        try:
            if not isinstance(layer, LoRAAdapter):
                adapter_class._check_arguments(
                    base, spec.rank, spec.alpha, spec.dropout, base_quantization)
            adapter_class._check_rank_fits(base, spec.rank)
            adapter_class._check_variant(base, spec.variant)
        except ValueError as error:
            raise ValueError(f"Layer '{path}': {error}") from None

    quantize_all = base_quantization is not None and quantize_frozen == "all"
    head = output_head_table(model) if quantize_all else None
    head_path = None if head is None else next(
        path for path, layer in paths.items() if layer is head)
    hessians = {} if calibration is None else input_hessians(model, {
        path: layer for path, layer in paths.items()
        if type(layer) in CALIBRATED_CLASSES and (path in specs or (
            quantize_all and not is_kept_trainable(path, keep_trainable)))
    }, calibration)

    def wrap(path, layer):
        if path not in specs:
            if (quantize_all and is_frozen_quantizable(layer) and layer.quantization_mode is None
                    and not is_kept_trainable(path, keep_trainable)):
                return quantized_copy(layer, frozen_quantization_mode(
                    base_quantization, output_head=path == head_path), hessians.get(path))
            return None
        if isinstance(layer, LoRAAdapter):
            adapter = with_adapter(layer, name, specs[path])
            view = adapter.view(name)
        else:
            adapter = adapter_class_for(layer).from_spec(
                layer, specs[path], adapter_name=name
            )
            view = adapter
            if init == "pissa":
                from keras_lowrank.adapters.pissa import pissa_init

                pissa_init(adapter)
            if base_quantization is not None:  # after PiSSA left the residual
                adapter.quantize_base(base_quantization, hessians.get(path))
        view.variant.initialize(view)
        return adapter

    adapted, _ = rewriting.rewrite_model(model, wrap)
    for layer in adapters(adapted).values():
        layer.set_active([name] if name in layer.adapter_names else [])
    freeze_all_but(adapted, keep_trainable)
    if config is not None and base_quantization != config.base_quantization:
        # Recorded as built: a file trained on a quantized base loads on a float one.
        config = config.replace(base_quantization=base_quantization,
                                quantize_frozen="adapted")
    configs = model_state.lora_configs(model)
    if config is not None:
        configs[name] = config
    model_state.set_lora_configs(adapted, configs)
    return adapted


def _check_quantization(model, paths, base_quantization):
    if base_quantization is None:
        return
    held = [p for p, layer in paths.items() if isinstance(layer, LoRAAdapter)]
    if held:
        raise ValueError(
            f"base_quantization={base_quantization!r} quantizes the base kernel "
            "when a layer gets its first adapter; model "
            f"'{model.name}' holds adapters already (at '{held[0]}'). Add the "
            "first adapter with base_quantization, later ones with "
            "base_quantization=None (they share the quantized base)."
        )


def with_adapter(layer, name, spec):
    """A new adapter layer: `layer`'s adapters (values kept) plus `name`."""
    specs = {n: layer.view(n).spec for n in layer.adapter_names}
    specs[name] = spec
    return rebuild_adapter(layer, specs, layer.active)


def rebuild_adapter(layer, specs, active):
    """A new adapter layer on `layer`'s base with the named `specs`.

    Weights of names `layer` already has are copied; new names keep their
    initial values. The base layer object is reused (it belongs to the copy
    being rewritten).
    """
    (first, first_spec), *more = specs.items()
    new = type(layer).from_spec(
        layer.layer, first_spec, adapter_name=first,
        more_adapters=dict(more),
        a_initializer=layer.a_initializer, b_initializer=layer.b_initializer,
    )
    for name in specs:
        if name in layer.adapter_names:
            old = layer.adapter_weights(name)
            for key, weight in new.adapter_weights(name).items():
                weight.assign(old[key])
    new.set_active([n for n in active if n in specs])
    return new


def _new_adapter_name(model, paths, adapter_name, init):
    from keras_lowrank.layers.adapter_slots import check_adapter_name

    existing = [n for n in _names(paths)]
    if adapter_name is None:
        if existing:
            held = [p for p, layer in paths.items() if isinstance(layer, LoRAAdapter)]
            raise ValueError(
                f"Layer '{held[0]}' of model '{model.name}' already holds a "
                f"{type(paths[held[0]]).__name__} (adapters {existing}). Pass "
                "adapter_name='...' to add another adapter beside them, merge "
                "first (`klr.merge_adapters`), or adapt the base model."
            )
        return "default"
    check_adapter_name(adapter_name)
    if adapter_name in existing:
        raise ValueError(
            f"Model '{model.name}' already has an adapter named "
            f"{adapter_name!r}. Adapters: {existing}. Choose a new name, or "
            "`klr.delete_adapter` it first."
        )
    if existing and init == "pissa":
        raise ValueError(
            "init='pissa' rewrites the base kernel, so it works for a layer's "
            f"first adapter only; model '{model.name}' has adapters {existing}. "
            "Use init='default' for another adapter."
        )
    return adapter_name


def _names(paths):
    names = []
    for layer in paths.values():
        if isinstance(layer, LoRAAdapter):
            names += [n for n in layer.adapter_names if n not in names]
    return names


def adapter_paths(model):
    """Paths of the layers of `model` that hold a LoRA adapter, in order."""
    return [
        path
        for path, layer in layer_paths.layer_paths(model).items()
        if isinstance(layer, LoRAAdapter)
    ]


def adapters(model):
    """`{path: adapter layer}` of `model`."""
    return {
        path: layer
        for path, layer in layer_paths.layer_paths(model).items()
        if isinstance(layer, LoRAAdapter)
    }


# === Matching ===
