"""`keras-lowrank export`: a saved Keras model to SavedModel, TFLite or ONNX.

MODEL is a .keras file, or a base preset folder plus `--adapters FILE`, or a
Hugging Face model folder plus `--peft-adapters FOLDER` (a PEFT LoRA folder).

Example:
```
keras-lowrank export classifier.keras --format tflite --quantize dynamic \
    --out classifier.tflite
keras-lowrank export base_preset/ --adapters adapters.safetensors \
    --format onnx --out classifier.onnx
keras-lowrank export hf_model_folder/ --peft-adapters peft_lora_folder/ \
    --format tflite --out model.tflite
keras-lowrank export causal_lm.keras --format tflite --out lm.tflite
keras-lowrank export SmolLM2-135M-Instruct/ --format litertlm \
    --quantize dynamic --out smollm2.litertlm
keras-lowrank export SmolLM2-135M-Instruct/ --format onnx_genai \
    --out smollm2-genai
keras-lowrank export base_preset/ --adapters adapters.safetensors \
    --format tflite --on-device-training adam --train-batch-size 8 \
    --out personal.tflite
```

A keras-hub causal LM goes through `klr.export`'s generation hook
(`keras_lowrank.generation.dispatch_export`): prefill and decode graphs
with a KV cache of 256 positions (fewer where the model embeds fewer),
verified by greedy generation. `litertlm` (a LiteRT-LM bundle) and
`onnx_genai` (an ONNX Runtime GenAI folder) take a causal LM only: a
Hugging Face folder as MODEL is loaded as one, and its tokenizer.json is
the default `--tokenizer`.

Exit status: 0 when the artifact was written and matched Keras, 1 when it did
not match (nothing is left at `--out`), 2 for a usage error.
"""

import os
import sys

# The artifact is written aside and moved to --out once verified.
OUT_IS_ATOMIC = True
# What --tokenizer defaults to in a Hugging Face model folder.
TOKENIZER_FILE = "tokenizer.json"


def add_parser(subparsers):
    from keras_lowrank.cli.model_argument import add_model_arguments
    from keras_lowrank.exporters import all_formats
    from keras_lowrank.exporters.formats import calibrated_modes
    from keras_lowrank.generation import RUNTIME_FORMATS
    from keras_lowrank.on_device.options import OPTIMIZERS

    # Choices and help come from the format registries, read when the
    # parser is built: a registered format is listed without a change here.
    records = all_formats()
    runtimes = RUNTIME_FORMATS.values()
    titles = _either([*(r.title for r in records), "LLM runtimes"])
    quantizing = [r for r in records if "quantize" in r.options]
    modes = dict.fromkeys(m for r in quantizing for m in r.quantize_modes if m)
    runtime_modes = {r.name: [m for m in r.quantize_modes if m] for r in runtimes}
    parser = subparsers.add_parser(
        "export",
        help=f"export a model to {titles} and verify it",
        description="Merge LoRA adapters, export, run the artifact in its "
        "runtime at batch 1 and 8, and compare it with Keras. MODEL is a "
        ".keras file, or a base preset folder plus --adapters FILE, or a "
        "Hugging Face model folder plus --peft-adapters FOLDER. A keras-hub "
        "causal LM (a .keras file) in tflite or onnx becomes a generation "
        "artifact: prefill and decode with a KV cache, greedy generation "
        "checked token for token against Keras (--quantize dynamic: on "
        "token agreement). litertlm and onnx_genai are for a causal LM only "
        "(a .keras file with --tokenizer, or a Hugging Face folder).",
    )
    add_model_arguments(parser)
    # No argparse `choices`: an unknown format then gets the one-line error
    # of `export`, like every other usage error.
    parser.add_argument(
        "--format", required=True,
        help=_either([*(f"{r.name} ({r.title})" for r in records),
                      *(f"{r.name} ({r.title}, causal LM only)" for r in runtimes)]),
    )
    parser.add_argument("--out", required=True, help="the artifact to write")
    parser.add_argument(
        "--quantize", default=None,
        help=f"{_only('quantize')}: {_either(modes)}; "
        + "; ".join(f"{name}: {_either(m) or 'none'}"
                    for name, m in runtime_modes.items())
        + " (default: none)",
    )
    parser.add_argument(
        "--tokenizer", default=None, metavar="PATH",
        help="a causal LM's Hugging Face tokenizer.json, put into the "
        f"{_either(RUNTIME_FORMATS)} artifact with the tokenizer_config.json "
        "beside it (default: MODEL/tokenizer.json of a model folder)",
    )
    parser.add_argument(
        "--allow-flex",
        action="store_true",
        help=f"{_only('allow_flex')}: keep TensorFlow ops outside the "
        "builtins (Flex)",
    )
    parser.add_argument(
        "--opset", type=int, default=None,
        help=f"{_only('opset')}: the opset version",
    )
    parser.add_argument(
        "--atol", type=float, default=None, help="largest allowed abs diff"
    )
    parser.add_argument(
        "--sample-inputs", default=None, help=".npz of inputs to verify with"
    )
    parser.add_argument(
        "--representative-data",
        default=None,
        help=f"{_either(calibrated_modes())} only: .npz of calibration inputs, "
        "one sample per row",
    )
    parser.add_argument(
        "--no-verify", action="store_true", help="skip running the artifact"
    )
    training = parser.add_argument_group(
        "on-device training (tflite, a model with adapters: its LoRA factors "
        "train in LiteRT; docs/on_device_training.md)")
    training.add_argument(
        "--on-device-training", default=None, metavar="OPTIMIZER",
        help=f"write a trainable artifact whose train signature steps with "
        f"{_either(OPTIMIZERS)}")
    training.add_argument("--train-batch-size", type=int, default=None,
                          help="rows per train step (default 8)")
    training.add_argument("--learning-rate", type=float, default=None,
                          help="default: Keras' for the optimizer")
    training.add_argument("--weight-decay", type=float, default=None,
                          help="decoupled, as Keras applies it (AdamW: 0.004)")
    training.add_argument("--sequence-length", type=int, default=None,
                          help="tokens per row (default: the preprocessor's)")
    return parser


def _on_device_training(args):
    """The `OnDeviceTraining` the flags ask for, or None."""
    from keras_lowrank.on_device import OnDeviceTraining

    flags = {"batch_size": "train_batch_size", "learning_rate": "learning_rate",
             "weight_decay": "weight_decay", "sequence_length": "sequence_length"}
    given = {field: getattr(args, flag) for field, flag in flags.items()
             if getattr(args, flag) is not None}
    if args.on_device_training is None:
        if given:
            flags = ", ".join("--" + flags[field].replace("_", "-") for field in given)
            raise ValueError(
                f"{flags} set how a trainable artifact trains; add "
                "--on-device-training sgd|adam|adamw")
        return None
    return OnDeviceTraining(optimizer=args.on_device_training, **given)


def run(args):
    from keras_lowrank.exporters import ExportOptions
    from keras_lowrank.exporters import validate_export_arguments
    from keras_lowrank.generation import RUNTIME_FORMATS
    from keras_lowrank.generation import check_runtime_arguments

    runtime = args.format in RUNTIME_FORMATS
    # The .npz files are named here and read only once the arguments hold.
    options = ExportOptions(
        quantize=args.quantize,
        verify=not args.no_verify,
        allow_flex=args.allow_flex,
        opset=args.opset,
        representative_data=args.representative_data,
        atol=args.atol,
        tokenizer=_tokenizer(args) if runtime else args.tokenizer,
        on_device_training=_on_device_training(args),
    )
    # Before the model loads: an --out that cannot be written fails first.
    if runtime:
        check_runtime_arguments(args.out, args.format, options)
    else:
        # Whether MODEL takes --tokenizer (a causal LM) is known once loaded.
        validate_export_arguments(args.out, args.format,
                                  options.replace(tokenizer=None))
    sample_inputs = None
    if args.sample_inputs:
        sample_inputs = _load_npz(args.sample_inputs, "--sample-inputs")
    representative = options.representative_data
    if representative:
        rows = _load_npz(representative, "--representative-data")
        count = len(next(iter(rows.values())))
        representative = [
            {name: value[i : i + 1] for name, value in rows.items()}
            for i in range(count)
        ]
    options = options.replace(
        sample_inputs=sample_inputs, representative_data=representative
    )

    from keras_lowrank.cli.model_argument import load_model_argument
    from keras_lowrank.exporters import ExportVerificationError
    from keras_lowrank.exporters import export

    model = load_model_argument(args.model, args.adapters, args.peft_adapters,
                                causal_lm=runtime)
    try:
        report = export(model, args.out, args.format, options=options)
    except ExportVerificationError as error:
        message = " ".join(str(error).split())
        print(f"keras-lowrank export: verification failed: {message}", file=sys.stderr)
        return 1
    print(report)
    return 0


def _tokenizer(args):
    """`--tokenizer`, else MODEL/tokenizer.json of a model folder.

    Raises:
        ValueError: neither, naming `--tokenizer`.
    """
    if args.tokenizer is not None:
        return args.tokenizer
    default = os.path.join(args.model, TOKENIZER_FILE)
    if os.path.isdir(args.model) and os.path.isfile(default):
        return default
    where = (f"MODEL '{args.model}' holds no {TOKENIZER_FILE}"
             if os.path.isdir(args.model) else
             f"MODEL '{args.model}' is not a model folder")
    raise ValueError(
        f"--format {args.format} puts the model's Hugging Face "
        f"{TOKENIZER_FILE} into the artifact, and {where}. Pass --tokenizer "
        f"PATH (the {TOKENIZER_FILE} of the model's Hugging Face folder)")


def _either(names):
    """`"a, b or c"`."""
    *most, last = list(names) or [""]
    return f"{', '.join(most)} or {last}" if most else last


def _only(option):
    """`"tflite only"`: the formats that take the export argument `option`."""
    from keras_lowrank.exporters.formats import formats_with_option

    return f"{_either(formats_with_option(option))} only"


def _existing_file(path, extension, what):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what}: no such file: {path}")
    if not path.endswith(extension):
        raise ValueError(f"{what} must be a {extension} file. Received: {path}")
    return path


def _load_npz(path, what):
    import numpy as np

    _existing_file(path, ".npz", what)
    with np.load(path) as data:
        arrays = {name: data[name] for name in data.files}
    if not arrays:
        raise ValueError(f"{path} holds no arrays.")
    return arrays
