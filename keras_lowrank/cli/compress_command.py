"""`keras-lowrank compress`: factorize kernels by SVD, save, print the report."""

_METHODS = (("rank", "--rank"), ("energy", "--energy"), ("param_ratio", "--param-ratio"))


def add_parser(subparsers):
    from keras_lowrank.cli.model_argument import add_model_arguments

    parser = subparsers.add_parser(
        "compress",
        help="factorize Dense/EinsumDense kernels by truncated SVD",
        description="Replace the targeted Dense and EinsumDense layers by "
        "low-rank factors (truncated SVD) where that saves parameters, save "
        "the model as .keras and print a per-layer report. Adapters (from "
        "--adapters or in MODEL) are merged first.",
    )
    add_model_arguments(parser)
    parser.add_argument("--rank", type=int, metavar="K",
                        help="the same rank K for every targeted layer")
    parser.add_argument("--energy", type=float, metavar="E",
                        help="per layer, the smallest rank keeping this share "
                        "of the squared singular values, in (0, 1]")
    parser.add_argument("--param-ratio", type=float, metavar="R",
                        help="per layer, the rank whose factors hold about this "
                        "share of the kernel's parameters, in (0, 1)")
    parser.add_argument("--targets", nargs="+", default=["all-linear"],
                        metavar="PATTERN",
                        help="layer paths, names, globs or 're:' expressions "
                        "(default: all-linear, every Dense and EinsumDense "
                        "outside a task's head)")
    parser.add_argument("--exclude", nargs="+", default=[], metavar="PATTERN",
                        help="patterns of layers never factorized")
    parser.add_argument("--train-only-factors", action="store_true",
                        help="freeze every layer but the factors and the head")
    parser.add_argument("--out", required=True, metavar="PATH.keras",
                        help="where to write the compressed model")
    parser.add_argument("--plot", metavar="PNG",
                        help="also write the spectra of the targeted layers, "
                        "with the chosen ranks marked")
    return parser


def run(args):
    given = {name: getattr(args, name) for name, _ in _METHODS
             if getattr(args, name) is not None}
    if len(given) != 1:
        received = ", ".join(f"{flag}={getattr(args, name)}" for name, flag in _METHODS)
        raise ValueError(
            "give exactly one of --rank, --energy or --param-ratio. "
            f"Received: {received}"
        )
    if not args.out.endswith(".keras"):
        raise ValueError(f"--out must end with .keras. Received: --out {args.out}")
    if args.plot is not None and not args.plot.lower().endswith(".png"):
        raise ValueError(f"--plot writes a PNG; give a path ending in .png. "
                         f"Received: --plot {args.plot}")

    import keras_lowrank as klr
    from keras_lowrank.cli.model_argument import load_model_argument
    from keras_lowrank.compression.compress import compress
    from keras_lowrank.surgery.layer_paths import layer_paths
    from keras_lowrank.svd import plot_spectrum
    from keras_lowrank.utils.atomic import atomic_path
    from keras_lowrank.utils.atomic import check_target

    check_target(args.out)
    if args.plot is not None:
        check_target(args.plot)
    model = load_model_argument(args.model, args.adapters, args.peft_adapters)
    merged = len(klr.adapter_paths(model))
    if merged:
        model = klr.merge_adapters(model)
        print(f"merged {merged} adapters before compressing")
    targets = "all-linear" if args.targets == ["all-linear"] else args.targets
    compressed, report = compress(
        model, targets=targets, exclude=args.exclude,
        train_only_factors=args.train_only_factors, **given,
    )
    print(report)
    with atomic_path(args.out, suffix=".keras") as tmp:
        compressed.save(tmp)
    print(f"compressed model -> {args.out}")
    if args.plot is not None:
        paths = layer_paths(model)
        layers = {row.path: paths[row.path] for row in report.layers
                  if row.rank is not None}
        plot_spectrum(layers, args.plot, ranks=report.ranks)
        print(f"spectra of {len(layers)} layers -> {args.plot}")
    return 0
