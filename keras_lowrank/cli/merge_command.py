"""`keras-lowrank merge`: fold the adapters into the kernels, save the model."""

from keras_lowrank.utils.atomic import has_files

# The merged model is written aside and moved to --out in one rename.
OUT_IS_ATOMIC = True

# What an earlier `merge --out FOLDER` left: a folder holding other files is
# never replaced.
_PRESET = has_files("config.json", "metadata.json")


def add_parser(subparsers):
    from keras_lowrank.cli.model_argument import add_model_arguments

    parser = subparsers.add_parser(
        "merge",
        help="merge adapters into the base weights",
        description="Merge LoRA adapters into their kernels (W + s·A·B) and "
        "save a plain model: a .keras file, or a keras-hub preset folder.",
    )
    add_model_arguments(parser)
    parser.add_argument(
        "--out", required=True, metavar="PATH",
        help="where to write: PATH.keras, or a folder for a keras-hub preset",
    )
    return parser


def run(args):
    import keras_lowrank as klr
    from keras_lowrank.cli.model_argument import load_model_argument
    from keras_lowrank.utils.atomic import atomic_path
    from keras_lowrank.utils.atomic import check_target

    to_file = args.out.endswith(".keras")
    check_target(args.out, directory=not to_file, replaceable=_PRESET)
    model = load_model_argument(args.model, args.adapters, args.peft_adapters)
    if not klr.adapter_paths(model):
        raise ValueError(
            f"MODEL '{args.model}' holds no adapters to merge. Pass an "
            "adapted .keras file, or a base folder with --adapters FILE."
        )
    merged = klr.merge_adapters(model)
    if to_file:
        with atomic_path(args.out, suffix=".keras") as tmp:
            merged.save(tmp)
    else:
        if not hasattr(merged, "save_to_preset"):
            raise ValueError(
                "--out without .keras writes a keras-hub preset, but the model "
                f"is a {type(merged).__name__}. Use --out PATH.keras."
            )
        with atomic_path(args.out, directory=True, replaceable=_PRESET) as tmp:
            merged.save_to_preset(tmp)
    print(f"merged {len(klr.adapter_paths(model))} adapters -> {args.out}")
    print(klr.trainable_summary(merged))
    return 0
