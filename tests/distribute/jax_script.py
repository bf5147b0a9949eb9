"""The run of `case` under keras.distribution on four JAX host devices.

Run by `conftest.py` with `KERAS_BACKEND=jax` and
`XLA_FLAGS=--xla_force_host_platform_device_count=4` (and
`conftest.XLA_FAST_COMPILE`): `python -m tests.distribute.jax_script
OUT_DIR START_NPZ`. Two runs:

- `data_parallel`: `DataParallel` over the four devices;
- `model_parallel`: `ModelParallel` on a (batch 2, model 2) mesh, with a
  LayoutMap for the base kernels (Megatron-style: query, key, value and
  the intermediate dense split by output, attention output and output
  dense by input) through `klr.distribution.lora_layout_map`. Two of its
  patterns match every weight of a layer but its bias, the factors too.

Writes `<run>.npz` (trained adapter weights, predictions),
`<run>.safetensors` and `jax.json` (what it measured: the layout of each
factor, and the error the LayoutMap alone gives).
"""

import json
import os
import sys
import traceback

import jax
import keras

import keras_lowrank as klr
from tests.distribute import case


def base_layout_map(mesh):
    layout_map = keras.distribution.LayoutMap(mesh)
    layout_map[".*(query|key|value)/(?!bias).*"] = (None, "model", None)
    layout_map[".*attention_output/(?!bias).*"] = ("model", None, None)
    layout_map[".*intermediate_dense/kernel"] = (None, "model")
    layout_map[".*output_dense/kernel"] = ("model", None)
    return layout_map


def train(name, distribution, out_dir, start, layout_map=None):
    with distribution.scope():
        base = case.build_base()
        if layout_map is not None:
            distribution = keras.distribution.ModelParallel(
                layout_map=klr.distribution.lora_layout_map(layout_map, base),
                batch_dim_name="batch",
            )
    with distribution.scope():
        _, model = case.load_start(start, base)
        case.compile_model(model)
        checked = klr.distribution.check_distributed(model, distribution)
        case.fit(model)
    predictions = case.predict(model)
    case.save_values(
        os.path.join(out_dir, f"{name}.npz"), case.adapter_values(model),
        predictions=predictions,
    )
    written = klr.distribution.save_adapters(model, os.path.join(out_dir, f"{name}.safetensors"))
    layouts = {
        w.path: [a if a is None or isinstance(a, str) else list(a) for a in w.value.sharding.spec]
        + [None] * (len(w.shape) - len(w.value.sharding.spec))
        for w in model.weights
        if "lora_" in w.path.rsplit("/", 1)[-1]
    }
    return {
        "checked_weights": checked,
        "weights": len(model.weights),
        "steps": int(keras.ops.convert_to_numpy(model.optimizer.iterations)),
        "adapter_file_bytes": written,
        "factor_layouts": layouts,
    }


def layout_map_alone_error(mesh, start):
    """What add_adapters gives under the base LayoutMap without klr's rules."""
    distribution = keras.distribution.ModelParallel(
        layout_map=base_layout_map(mesh), batch_dim_name="batch"
    )
    with distribution.scope():
        try:
            case.load_start(start)
        except Exception as error:  # JAX's sharding error, whatever its class
            return f"{type(error).__name__}: {str(error)[:2000]}"
    return None


def main(out_dir, start):
    devices = jax.devices()
    result = {"devices": len(devices), "is_chief": klr.distribution.is_chief()}
    try:
        result["data_parallel"] = train(
            "data_parallel", keras.distribution.DataParallel(devices=devices),
            out_dir, start,
        )
        mesh = keras.distribution.DeviceMesh((2, 2), ["batch", "model"], devices=devices)
        result["layout_map_alone_error"] = layout_map_alone_error(mesh, start)
        base_map = base_layout_map(mesh)
        result["model_parallel"] = train(
            "model_parallel",
            keras.distribution.ModelParallel(layout_map=base_map, batch_dim_name="batch"),
            out_dir, start, layout_map=base_map,
        )
    except Exception:  # reported to the test, which shows it
        result["error"] = traceback.format_exc()
    with open(os.path.join(out_dir, "jax.json"), "w") as file:
        json.dump(result, file)


if __name__ == "__main__":
    main(*sys.argv[1:])
