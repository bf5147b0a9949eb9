"""`keras-lowrank inspect`: adapted layers, ranks and parameter counts."""

import math
import os


def add_parser(subparsers):
    from keras_lowrank.cli.model_argument import add_model_arguments

    parser = subparsers.add_parser(
        "inspect",
        help="list adapted layers, ranks and the trainable summary",
        description="Print the adapted layers of a model (or of an adapter "
        "file), their ranks and scales, and the trainable summary.",
    )
    add_model_arguments(parser)
    return parser


def run(args):
    from keras_lowrank.peft import is_peft_folder

    if args.model.endswith(".safetensors") and os.path.isfile(args.model):
        return _inspect_file(args.model)
    if is_peft_folder(args.model) and args.adapters is None and args.peft_adapters is None:
        return _inspect_peft_folder(args.model)
    import keras_lowrank as klr
    from keras_lowrank.adapters.adapted_model import adapters
    from keras_lowrank.cli.model_argument import load_model_argument

    model = load_model_argument(args.model, args.adapters, args.peft_adapters)
    found = adapters(model)
    print(f"{type(model).__name__} '{model.name}': {len(found)} adapted layers")
    rows = [("layer", "kind", "rank", "alpha", "scale", "params", "adapter", "variant")]
    for path, adapter in found.items():
        for name in adapter.adapter_names:
            view = adapter.view(name)
            params = sum(math.prod(w.shape) for w in adapter.adapter_weights(name).values())
            active = "" if name in adapter.active else " (inactive)"
            rows.append((path, type(adapter).__name__, str(view.rank),
                         f"{view.alpha:g}", f"{view.scale:g}", f"{params:,}",
                         name + active, view.spec.variant))
    _print_table(rows)
    print(klr.trainable_summary(model))
    return 0


def _inspect_file(path):
    import keras_lowrank as klr

    metadata = klr.read_adapter_metadata(path)
    specs = metadata["adapters"]
    adapted = {p for table in [specs, *metadata.get("named_adapters", {}).values()] for p in table}
    print(f"adapter file for {metadata['model_class']}: {len(adapted)} adapted layers, "
          f"{os.path.getsize(path):,} bytes")
    named = {"default": specs, **metadata.get("named_adapters", {})}
    rows = [("layer", "kind", "rank", "alpha", "kernel", "adapter", "variant")]
    for name, table in named.items():
        for layer_path, spec in table.items():
            rows.append((layer_path, spec["kind"], str(spec["rank"]), f"{spec['alpha']:g}",
                         "x".join(map(str, spec["base_kernel_shape"])), name,
                         spec.get("variant", "lora")))
    _print_table(rows)
    if metadata["trainable_layers"]:
        print("fully trained layers:", ", ".join(metadata["trainable_layers"]))
    return 0


def _inspect_peft_folder(folder):
    from keras_lowrank.peft import describe_peft_folder

    info = describe_peft_folder(folder)
    print(info["summary"])
    _print_table(info["rows"])
    for module, shapes in info["modules_to_save"].items():
        described = ", ".join(f"{k} {'x'.join(map(str, s))}" for k, s in shapes.items())
        print(f"fully trained module (modules_to_save): {module} ({described})")
    return 0


def _print_table(rows):
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
