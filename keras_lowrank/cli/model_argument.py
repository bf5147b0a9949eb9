"""The MODEL argument of the commands: a `.keras` file, or a base folder.

- `model.keras`: a saved Keras model (adapted, merged, or plain).
- `FOLDER --adapters adapters.safetensors`: a keras-hub preset folder, or a
  Hugging Face folder keras-hub converts (like all-MiniLM-L6-v2), loaded as
  the task class the adapter file names, with the adapters put on it.
- `FOLDER` alone: loaded as a keras-hub backbone; or, for the formats that
  take a causal LM only (`litertlm`, `onnx_genai`), as the Hugging Face
  folder's causal LM (`keras_lowrank.lm_finetune.load_causal_lm`).
- `HF_FOLDER --peft-adapters ADAPTER_FOLDER`: a Hugging Face folder keras-hub
  converts, loaded as the class the PEFT adapter's task type asks for
  (backbone, text classifier, causal LM), with the PEFT adapter put on it.
"""

import os


def add_model_arguments(parser):
    parser.add_argument(
        "model",
        metavar="MODEL",
        help="a .keras file, or a keras-hub / Hugging Face model folder",
    )
    parser.add_argument(
        "--adapters",
        metavar="FILE",
        help="an adapter file from save_adapters, put on MODEL",
    )
    parser.add_argument(
        "--peft-adapters",
        metavar="FOLDER",
        help="a Hugging Face PEFT LoRA folder (adapter_config.json, "
        "adapter_model.safetensors), put on MODEL",
    )


def load_model_argument(model_path, adapters=None, peft_adapters=None,
                        causal_lm=False):
    """The model the MODEL, --adapters and --peft-adapters arguments name.

    `causal_lm=True`: a folder alone is a Hugging Face causal-LM folder,
    loaded as its keras-hub causal LM (float32) instead of a backbone.

    Raises:
        FileNotFoundError: MODEL or the --adapters file does not exist.
        ValueError: MODEL is a file but not a .keras file, or a .keras file
            Keras cannot read (the message says why), the --adapters file is
            not an adapter file, or its adapters do not fit MODEL.
    """
    import keras_lowrank as klr

    if not os.path.exists(model_path):
        raise FileNotFoundError(
            f"MODEL '{model_path}' does not exist. Give a .keras file or a "
            "model folder."
        )
    if adapters is not None and not os.path.isfile(adapters):
        raise FileNotFoundError(f"--adapters file '{adapters}' does not exist.")
    if peft_adapters is not None:
        return _load_with_peft_adapters(model_path, adapters, peft_adapters)
    if os.path.isfile(model_path):
        if not model_path.endswith(".keras"):
            raise ValueError(
                f"MODEL '{model_path}' is a file but not a .keras file. Give a "
                ".keras file or a model folder."
            )
        model = _load_keras_file(model_path)
        return klr.load_adapters(model, adapters) if adapters else model
    if adapters is None and causal_lm:
        from keras_lowrank.lm_finetune.causal_lm_loading import load_causal_lm

        return load_causal_lm(model_path)
    if adapters is None:
        import keras_hub

        return keras_hub.models.Backbone.from_preset(model_path)
    return klr.load_adapters(_task_for_adapters(model_path, adapters), adapters)


def _load_with_peft_adapters(model_path, adapters, peft_adapters):
    import keras_lowrank as klr
    from keras_lowrank.peft import is_peft_folder
    from keras_lowrank.peft import load_peft_model

    if adapters is not None:
        raise ValueError(
            "Give --adapters or --peft-adapters, not both: a model takes one "
            "adapter source here."
        )
    if not is_peft_folder(peft_adapters):
        raise FileNotFoundError(
            f"--peft-adapters '{peft_adapters}' is not a PEFT adapter folder "
            "(no adapter_config.json)."
        )
    if os.path.isfile(model_path):
        if not model_path.endswith(".keras"):
            raise ValueError(
                f"MODEL '{model_path}' is a file but not a .keras file. Give a "
                ".keras file or a Hugging Face model folder."
            )
        return klr.load_peft_adapters(_load_keras_file(model_path), peft_adapters)
    return load_peft_model(model_path, peft_adapters)


def _load_keras_file(path):
    import zipfile

    import keras

    # Keras says "File not found" of any file that is not a zip archive.
    with open(path, "rb") as file:  # an unreadable file: its own OSError
        if not zipfile.is_zipfile(file):
            raise ValueError(_unreadable(
                path, f"not a zip archive ({os.path.getsize(path):,} bytes)"))
    _import_keras_hub()  # registers the classes a saved task needs
    try:
        # compile=False: no command needs the optimizer, and keras-hub tasks
        # warn on stderr that their custom compile() cannot be restored.
        return keras.models.load_model(path, compile=False)
    except (zipfile.BadZipFile, KeyError, ValueError, EOFError, OSError) as error:
        reason = error.args[0] if isinstance(error, KeyError) and error.args else error
        raise ValueError(_unreadable(path, reason)) from None


def _unreadable(path, reason):
    reason = " ".join(str(reason).split()).rstrip(".")
    if len(reason) > 200:
        reason = reason[:197] + "..."
    return (
        f"MODEL '{path}' is not a readable .keras file: {reason}. Give a "
        ".keras file written by Keras (model.save)."
    )


def _import_keras_hub():
    try:
        import keras_hub  # noqa: F401
    except ImportError:  # a plain Keras model needs no keras-hub
        pass


def _task_for_adapters(folder, adapters):
    import keras_hub
    from safetensors import safe_open

    import keras_lowrank as klr

    metadata = klr.read_adapter_metadata(adapters)
    class_name = metadata["model_class"]
    cls = getattr(keras_hub.models, class_name, None)
    if cls is None:
        raise ValueError(
            f"The adapter file was saved from a {class_name}, which keras-hub "
            "has no class for."
        )
    kwargs = {}
    if issubclass(cls, keras_hub.models.TextClassifier):
        # The number of classes is the width of the saved head.
        with safe_open(adapters, framework="numpy") as handle:
            heads = [k for k in handle.keys() if k.endswith("/kernel")]
            if heads:
                kwargs["num_classes"] = handle.get_slice(heads[-1]).get_shape()[-1]
    return cls.from_preset(folder, **kwargs)
