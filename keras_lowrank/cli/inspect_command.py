"""`keras-lowrank inspect`: adapted layers, ranks and parameter counts."""

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
    if args.model.endswith(".safetensors") and os.path.isfile(args.model):
        return _inspect_file(args.model)
    import keras_lowrank as klr
    from keras_lowrank.adapted_model import adapters
    from keras_lowrank.cli.model_argument import load_model_argument

    model = load_model_argument(args.model, args.adapters)
    found = adapters(model)
    print(f"{type(model).__name__} '{model.name}': {len(found)} adapted layers")
    rows = [("layer", "kind", "rank", "alpha", "scale", "params")]
    for path, adapter in found.items():
        params = int(adapter.lora_a.shape[0] * adapter.rank + adapter.rank * adapter.lora_b.shape[1])
        rows.append((path, type(adapter).__name__, str(adapter.rank),
                     f"{adapter.alpha:g}", f"{adapter.scale:g}", f"{params:,}"))
    _print_table(rows)
    print(klr.trainable_summary(model))
    return 0


def _inspect_file(path):
    import keras_lowrank as klr

    metadata = klr.read_adapter_metadata(path)
    specs = metadata["adapters"]
    print(f"adapter file for {metadata['model_class']}: {len(specs)} adapted layers, "
          f"{os.path.getsize(path):,} bytes")
    rows = [("layer", "kind", "rank", "alpha", "kernel")]
    for layer_path, spec in specs.items():
        rows.append((layer_path, spec["kind"], str(spec["rank"]), f"{spec['alpha']:g}",
                     "x".join(map(str, spec["base_kernel_shape"]))))
    _print_table(rows)
    if metadata["trainable_layers"]:
        print("fully trained layers:", ", ".join(metadata["trainable_layers"]))
    return 0


def _print_table(rows):
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
