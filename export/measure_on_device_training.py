"""Measures on-device training: a trainable LiteRT artifact against Keras.

Two parts, each a few child processes run one after another (one heavy
process at a time), so that each peak memory figure is that process alone:

- `classifier`: all-MiniLM-L6-v2 as the demo's MR classifier (LoRA rank 8,
  alpha 16 on query/value, a fresh 2-class head, dropout 0 everywhere),
  exported with `OnDeviceTraining(batch_size=8, optimizer=...)`. Starts
  from zero-init adapters (B = 0) and a fresh head, so the model as
  exported is the base with an untrained head. Trains on 320 rows of MR's
  test split (seed 1337, never seen by the demo run) for 3 epochs and
  evaluates on the next 400 rows, in LiteRT (`infer`, `train`) and in Keras
  (`train_on_batch`, same batches, same order).
- `smollm2`: SmolLM2-135M-Instruct (LoRA rank 8 on attention query/value,
  dropout 0), exported with batch 4, sequence length 64, SGD; trained on 32
  MR instructions whose completion is the label word (3 epochs of 8 steps),
  in LiteRT and in Keras (`train_on_batch(x, labels,
  sample_weight=loss_mask)`).

Stages (children): `export` (Keras + converter; writes the artifact, the
rows, the initial trained weights), `litert` (ai_edge_litert only: no
TensorFlow imported), `keras` (the same training; then
`klr.load_adapters(model, device factors)` against LiteRT's `infer`),
`timing` (both in one process, train steps interleaved on one batch: the
ratio of medians). The parent only starts them and reads their JSON.

Usage:
    python export/measure_on_device_training.py --part classifier
    python export/measure_on_device_training.py --part smollm2 --steps 8
    python export/measure_on_device_training.py --part classifier \\
        --optimizer sgd --learning-rate 0.05 --out runs/on_device/sgd.json

Writes `--out` (default `runs/on_device/<part>.json`) and the artifact and
intermediate arrays in `<out without .json>_work/`.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
import zipfile

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
STAGES = ("export", "litert", "keras", "timing")
SEED = 1337


# === Parent: runs the stages, one child at a time ===


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=("classifier", "smollm2"), required=True)
    parser.add_argument("--out", default=None, help="JSON summary (default runs/on_device/<part>.json)")
    parser.add_argument("--optimizer", choices=("sgd", "adam", "adamw"), default=None,
                        help="default: adam (classifier), sgd (smollm2)")
    parser.add_argument("--learning-rate", type=float, default=None,
                        help="default: 1e-3 (classifier, adam), 1e-2 (smollm2, sgd)")
    parser.add_argument("--batch-size", type=int, default=None, help="default 8 / 4")
    parser.add_argument("--sequence-length", type=int, default=64)
    parser.add_argument("--train-rows", type=int, default=None, help="default 320 / 32")
    parser.add_argument("--eval-rows", type=int, default=400, help="classifier only")
    parser.add_argument("--epochs", type=int, default=None, help="default 3")
    parser.add_argument("--steps", type=int, default=None,
                        help="smollm2: stop after this many train steps (default: all)")
    parser.add_argument("--timing-reps", type=int, default=None, help="default 15 / 5")
    parser.add_argument("--threads", type=int, default=2, help="LiteRT interpreter threads")
    parser.add_argument("--atol", type=float, default=None,
                        help="bound of the export's infer-vs-Keras check (default: the "
                             "package's, max(1e-4, 2e-3 x the largest logit))")
    parser.add_argument("--verify", action=argparse.BooleanOptionalAction, default=True,
                        help="the export's own LiteRT check (default: on)")
    parser.add_argument("--max-rss-gb", type=float, default=18.0,
                        help="kill a stage whose memory passes this")
    parser.add_argument("--stage-timeout", type=float, default=1800.0)
    parser.add_argument("--reuse", action="store_true",
                        help="keep the stages whose JSON is in the work folder already")
    parser.add_argument("--stage", choices=STAGES, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--work", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    lm = args.part == "smollm2"
    defaults = {"optimizer": "sgd" if lm else "adam", "batch_size": 4 if lm else 8,
                "train_rows": 32 if lm else 320, "epochs": 3,
                "timing_reps": 5 if lm else 15}
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.learning_rate is None:
        args.learning_rate = {"sgd": 1e-2, "adam": 1e-3, "adamw": 1e-3}[args.optimizer]
    args.out = args.out or os.path.join("runs", "on_device", f"{args.part}.json")
    args.work = args.work or os.path.splitext(args.out)[0] + "_work"
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.stage:
        result = STAGE_FUNCTIONS[args.stage](args)
        result["max_rss_mb"] = _max_rss_mb(resource.RUSAGE_SELF)
        _write_json(os.path.join(args.work, f"{args.stage}.json"), result)
        return 0
    os.makedirs(args.work, exist_ok=True)
    stages = {}
    for stage in STAGES:
        done = os.path.join(args.work, f"{stage}.json")
        if args.reuse and os.path.isfile(done):
            with open(done, encoding="utf-8") as file:
                stages[stage] = {**json.load(file), "reused": True}
        else:
            stages[stage] = run_stage(args, stage)
        print(f"[{stage}] {json.dumps(_brief(stages[stage]))}", flush=True)
        if stages[stage].get("failed"):
            break
    summary = summarize(args, stages)
    _write_json(args.out, summary)
    print(json.dumps(summary, indent=1))
    return 1 if any(s.get("failed") for s in stages.values()) else 0


def run_stage(args, stage):
    """Runs `stage` in a child; returns its JSON with the parent's view of
    its memory (`ru_maxrss` of children, the polled peak RSS) and time."""
    command = [sys.executable, os.path.abspath(__file__), "--stage", stage, "--work", args.work]
    command += _forwarded(args)
    start = time.perf_counter()
    child = subprocess.Popen(command, cwd=REPO)
    peak = _watch(child, args.max_rss_gb * 1024 ** 3, args.stage_timeout, start)
    seconds = time.perf_counter() - start
    path = os.path.join(args.work, f"{stage}.json")
    result = {}
    if child.returncode == 0 and os.path.isfile(path):
        with open(path, encoding="utf-8") as file:
            result = json.load(file)
    else:
        result = {"failed": True, "returncode": child.returncode, "killed": peak["killed"]}
    result.update(
        stage_seconds=round(seconds, 1), polled_peak_rss_mb=round(peak["rss"] / 2 ** 20),
        ru_maxrss_children_mb=_max_rss_mb(resource.RUSAGE_CHILDREN))
    if not result.get("failed"):
        _write_json(path, result)
    return result


def _forwarded(args):
    out = ["--part", args.part, "--out", args.out]
    for name in ("optimizer", "learning_rate", "batch_size", "sequence_length", "train_rows",
                 "eval_rows", "epochs", "steps", "timing_reps", "threads", "atol"):
        value = getattr(args, name)
        if value is not None:
            out += ["--" + name.replace("_", "-"), str(value)]
    out.append("--verify" if args.verify else "--no-verify")
    return out


def _watch(child, limit_bytes, timeout, start):
    """Polls the child's RSS every 0.5 s; kills it past the limits."""
    peak = {"rss": 0, "killed": None}

    def poll():
        while child.poll() is None:
            rss = _rss_bytes(child.pid)
            peak["rss"] = max(peak["rss"], rss)
            reason = ("memory" if rss > limit_bytes else
                      "timeout" if time.perf_counter() - start > timeout else None)
            if reason:
                peak["killed"] = f"{reason}: rss {rss / 2 ** 30:.1f} GB after " \
                                 f"{time.perf_counter() - start:.0f} s"
                child.kill()
                return
            time.sleep(0.5)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    child.wait()
    thread.join()
    return peak


def _rss_bytes(pid):
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8") as file:
            for line in file:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _max_rss_mb(who):
    return round(resource.getrusage(who).ru_maxrss / 1024)  # Linux: kB


def _write_json(path, value):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as file:
        json.dump(value, file, indent=1)
    os.replace(tmp, path)


def _brief(result):
    return {k: v for k, v in result.items() if not isinstance(v, (list, dict))}


# === Summary ===


def summarize(args, stages):
    export, litert, keras_, timing = (stages.get(s, {}) for s in STAGES)
    summary = {
        "part": args.part,
        "date": time.strftime("%Y-%m-%d"),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "command": "python export/measure_on_device_training.py " + " ".join(sys.argv[1:]),
        "settings": {k: getattr(args, k) for k in (
            "optimizer", "learning_rate", "batch_size", "sequence_length", "train_rows",
            "eval_rows", "epochs", "steps", "threads", "atol", "verify")},
        "stages": stages,
    }
    if litert.get("losses") and keras_.get("losses"):
        a, b = np.asarray(litert["losses"]), np.asarray(keras_["losses"])
        n = min(len(a), len(b))
        summary["max_relative_loss_diff"] = float(np.max(np.abs(a[:n] - b[:n]) / np.abs(b[:n])))
        summary["epoch_losses"] = {"litert": litert["epoch_losses"], "keras": keras_["epoch_losses"]}
    for key in ("accuracy_before", "accuracy_after", "loss_before", "loss_after"):
        if key in litert:
            summary[f"litert_{key}"] = litert[key]
        if key in keras_:
            summary[f"keras_{key}"] = keras_[key]
    if "load_adapters_max_abs_diff" in keras_:
        summary["load_adapters_max_abs_diff"] = keras_["load_adapters_max_abs_diff"]
    for name in ("export_seconds", "artifact_bytes", "trained_parameters", "ops"):
        if name in export:
            summary[name] = export[name]
    summary["median_step_seconds_in_training"] = {
        "litert": litert.get("median_step_seconds"), "keras": keras_.get("median_step_seconds")}
    summary["interleaved_timing"] = {k: timing.get(k) for k in (
        "litert_median_seconds", "keras_median_seconds", "litert_over_keras", "reps")}
    summary["memory_mb"] = {
        stage: {"max_rss": stages.get(stage, {}).get("max_rss_mb"),
                "rss_after_load": stages.get(stage, {}).get("rss_after_load_mb")}
        for stage in ("export", "litert", "keras")}
    return summary


def _cpu_model():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines()
                    if line.startswith("Model name"))
    except (OSError, StopIteration):
        return None


# === Shared by the stages ===


def _paths(args):
    return {"artifact": os.path.join(args.work, "trainable.tflite"),
            "rows": os.path.join(args.work, "rows.npz"),
            "initial": os.path.join(args.work, "initial.npz"),
            "device": os.path.join(args.work, "device_trained.npz")}


def _save_dict(path, arrays):
    """`{key: array}` with any key (adapter keys hold '/')."""
    keys = sorted(arrays)
    np.savez(path, __keys__=np.asarray(keys), **{f"t{i}": arrays[k] for i, k in enumerate(keys)})


def _load_dict(path):
    with np.load(path) as data:
        return {str(k): data[f"t{i}"] for i, k in enumerate(data["__keys__"])}


def _rss_mb():
    return round(_rss_bytes(os.getpid()) / 2 ** 20)


def _batches(rows, batch_size, prefix):
    """Consecutive full batches of the `prefix`-named arrays (no shuffle)."""
    count = len(rows[prefix + "labels"])
    names = [k for k in rows if k.startswith(prefix)]
    for begin in range(0, count - count % batch_size, batch_size):
        yield {k[len(prefix):]: rows[k][begin:begin + batch_size] for k in names}


def _split(batch):
    """`(inputs, labels, loss_mask or None)` of one batch dict."""
    batch = dict(batch)
    labels = batch.pop("labels")
    loss_mask = batch.pop("loss_mask", None)
    return batch, labels, loss_mask


def _train_schedule(args, rows):
    """The list of train batches, in order: epochs of consecutive batches,
    cut at `--steps`."""
    schedule = [b for _ in range(args.epochs) for b in _batches(rows, args.batch_size, "train/")]
    return schedule[:args.steps] if args.steps else schedule


def _load_rows(args):
    with np.load(_paths(args)["rows"]) as data:
        return {k: data[k] for k in data.files}


# === Stage: export (Keras, TensorFlow, converter) ===


def _keras_env():
    import keras

    import keras_lowrank as klr
    return keras, klr


def build_model(args):
    """The adapted model of `args.part`, dropout 0 everywhere."""
    keras, klr = _keras_env()
    keras.utils.set_random_seed(SEED)
    if args.part == "classifier":
        import keras_hub

        from keras_lowrank.models import presets
        folder = presets.minilm_path()
        backbone = keras_hub.models.BertBackbone.from_preset(folder, dropout=0.0)
        preprocessor = keras_hub.models.BertTextClassifierPreprocessor.from_preset(
            folder, sequence_length=args.sequence_length)
        base = keras_hub.models.BertTextClassifier(
            backbone=backbone, num_classes=2, preprocessor=preprocessor, dropout=0.0)
    else:
        from keras_lowrank.models import presets
        base = presets.smollm2_causal_lm()
    return klr.add_adapters(base, rank=8, alpha=16, dropout=0.0, targets=("query", "value"))


def _classifier_rows(args, model):
    from keras_lowrank.data import load_mr_polarity
    from keras_lowrank.finetune.training import tokenize

    data = load_mr_polarity(cache_dir=".cache", seed=SEED)
    inputs, labels = tokenize(model.preprocessor, data.test, args.train_rows + args.eval_rows)
    rows = {}
    for prefix, part in (("train/", slice(0, args.train_rows)), ("eval/", slice(args.train_rows, None))):
        rows.update({prefix + k: v[part] for k, v in inputs.items()})
        rows[prefix + "labels"] = labels[part].astype(np.int32)
    return rows


def _lm_rows(args, artifact):
    """MR instructions as (prompt, completion), through the artifact's own
    tokenizer and `text_batches.causal_lm_rows`."""
    from keras_lowrank.lm_finetune.mr_instruction_task import mr_instruction_examples
    from keras_lowrank.on_device import artifact_files
    from keras_lowrank.on_device import text_batches

    metadata = artifact_files.read_metadata(artifact)
    tokenizer = text_batches.load_tokenizer(artifact, metadata)
    pairs = []
    for example in mr_instruction_examples(".cache", seed=SEED)["test"]:
        prompt = ("<|im_start|>user\n" + example.messages[0][1] + "<|im_end|>\n"
                  "<|im_start|>assistant\n")
        # Short sentences only: the completion must fit the window.
        if len(tokenizer.encode(prompt, add_special_tokens=False).ids) + 3 <= args.sequence_length:
            pairs.append((prompt, example.completion))  # + the artifact's end token
        if len(pairs) == args.train_rows:
            break
    lm_rows = text_batches.causal_lm_rows(tokenizer, metadata, pairs)
    rows = {"train/" + k: v for k, v in lm_rows.inputs.items()}
    rows.update({"train/labels": lm_rows.labels, "train/loss_mask": lm_rows.loss_mask})
    return rows


def stage_export(args):
    keras, klr = _keras_env()
    from keras_lowrank.adapters.files import file_weights

    paths = _paths(args)
    start = time.perf_counter()
    model = build_model(args)
    load_seconds = time.perf_counter() - start
    rss_after_load = _rss_mb()
    trained = {k: np.asarray(w.numpy()) for k, w in file_weights(model).items() if w.trainable}
    _save_dict(paths["initial"], trained)
    rows = _classifier_rows(args, model) if args.part == "classifier" else None
    training = klr.OnDeviceTraining(
        batch_size=args.batch_size, optimizer=args.optimizer,
        learning_rate=args.learning_rate, sequence_length=args.sequence_length)
    sample, tokenizer = None, None
    if args.part == "smollm2":
        from keras_lowrank.models import presets
        tokenizer = os.path.join(presets.smollm2_path(), "tokenizer.json")
    if rows is not None:
        sample = {k[len("train/"):]: v[:args.batch_size] for k, v in rows.items()
                  if k.startswith("train/") and k != "train/labels"}
    start = time.perf_counter()
    report = klr.export(model, paths["artifact"], "tflite", on_device_training=training,
                        sample_inputs=sample, atol=args.atol, verify=args.verify,
                        tokenizer=tokenizer)
    export_wall = time.perf_counter() - start
    if rows is None:
        rows = _lm_rows(args, paths["artifact"])
    np.savez(paths["rows"], **rows)
    return {
        "model_load_seconds": round(load_seconds, 1),
        "export_seconds": round(float(report.export_seconds), 1),
        "export_wall_seconds_with_verification": round(export_wall, 1),
        "artifact_bytes": os.path.getsize(paths["artifact"]),
        "trained_parameters": int(report.trained_parameters),
        "factors": int(report.factors),
        "ops": sorted(report.ops) if isinstance(report.ops, (list, tuple, set, dict)) else str(report.ops),
        "checks": _jsonable(report.checks),
        "rss_after_load_mb": rss_after_load,
    }


def _jsonable(value):
    try:
        json.dumps(value)
        return value
    except TypeError:
        if hasattr(value, "__dict__"):
            return {k: _jsonable(v) for k, v in vars(value).items()}
        if isinstance(value, dict):
            return {str(k): _jsonable(v) for k, v in value.items()}
        return str(value)


# === Stage: litert (no TensorFlow) ===


class LiteRTArtifact:
    """The four signatures of a trainable artifact, with `ai_edge_litert`
    alone (the `trainer.OnDeviceTrainer` contract, without its checks)."""

    def __init__(self, path, threads):
        from ai_edge_litert.interpreter import Interpreter

        with zipfile.ZipFile(path) as archive:
            self.metadata = json.loads(archive.read("on_device_training.json"))
        interpreter = Interpreter(model_path=path, num_threads=threads)
        self.runners = {name: interpreter.get_signature_runner(name)
                        for name in ("infer", "train", "save", "restore")}

    def _cast(self, inputs):
        return {k: np.asarray(inputs[k]).astype(spec["dtype"])
                for k, spec in self.metadata["inputs"].items()}

    def infer(self, inputs):
        return np.asarray(self.runners["infer"](**self._cast(inputs))["logits"])

    def train(self, inputs, labels, loss_mask=None):
        extra = {"labels": np.asarray(labels, np.int32)}
        if loss_mask is not None:
            extra["loss_mask"] = np.asarray(loss_mask, np.float32)
        return float(self.runners["train"](**self._cast(inputs), **extra)["loss"])

    def save(self):
        outputs = self.runners["save"]()
        return {f["key"]: np.array(outputs[f["name"]]) for f in self.metadata["factors"]}


def _accuracy(logits, labels):
    return float(np.mean(np.argmax(logits, -1) == labels))


def stage_litert(args):
    paths = _paths(args)
    start = time.perf_counter()
    artifact = LiteRTArtifact(paths["artifact"], args.threads)
    result = {"load_seconds": round(time.perf_counter() - start, 2), "rss_after_load_mb": _rss_mb()}
    rows = _load_rows(args)
    if args.part == "classifier":
        result["accuracy_before"] = _evaluate(artifact.infer, rows, args)[0]
    losses, seconds = [], []
    for batch in _train_schedule(args, rows):
        inputs, labels, loss_mask = _split(batch)
        start = time.perf_counter()
        losses.append(artifact.train(inputs, labels, loss_mask))
        seconds.append(time.perf_counter() - start)
    result.update(_curve(losses, args, rows), median_step_seconds=statistics.median(seconds[1:]),
                  step_seconds=seconds)
    if args.part == "classifier":
        result["accuracy_after"], logits = _evaluate(artifact.infer, rows, args)
        np.save(os.path.join(args.work, "litert_eval_logits.npy"), logits)
    _save_dict(paths["device"], artifact.save())
    result["tensorflow_imported"] = "tensorflow" in sys.modules
    return result


def _evaluate(predict, rows, args):
    """`(accuracy, logits)` on the eval rows, in full batches."""
    logits, labels = [], []
    for batch in _batches(rows, args.batch_size, "eval/"):
        inputs, y, _ = _split(batch)
        logits.append(np.asarray(predict(inputs)))
        labels.append(y)
    logits = np.concatenate(logits)
    return _accuracy(logits, np.concatenate(labels)), logits


def _curve(losses, args, rows):
    steps = len(list(_batches(rows, args.batch_size, "train/")))
    epochs = [float(np.mean(losses[i:i + steps])) for i in range(0, len(losses), steps)]
    return {"losses": [float(x) for x in losses], "epoch_losses": epochs}


# === Stage: keras (the same training in Keras) ===


def _loaded(args, factors):
    """The adapted model holding `factors`, without its preprocessor: a
    keras-hub task's `*_on_batch` would tokenize the token ids again."""
    _, klr = _keras_env()
    model = klr.load_adapters(build_model(args), factors)
    model.preprocessor = None
    return model


def _keras_model(args, factors):
    keras, _ = _keras_env()
    model = _loaded(args, factors)
    optimizer = {"sgd": keras.optimizers.SGD, "adam": keras.optimizers.Adam,
                 "adamw": keras.optimizers.AdamW}[args.optimizer](learning_rate=args.learning_rate)
    model.compile(optimizer=optimizer,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=False)
    return model


def _keras_step(model, batch):
    inputs, labels, loss_mask = _split(batch)
    return float(model.train_on_batch(inputs, labels, sample_weight=loss_mask,
                                      return_dict=True)["loss"])


def stage_keras(args):
    keras, klr = _keras_env()
    paths = _paths(args)
    start = time.perf_counter()
    model = _keras_model(args, _load_dict(paths["initial"]))
    result = {"load_seconds": round(time.perf_counter() - start, 1), "rss_after_load_mb": _rss_mb()}
    rows = _load_rows(args)
    predict = lambda x: model.predict_on_batch(x)  # noqa: E731
    if args.part == "classifier":
        result["accuracy_before"] = _evaluate(predict, rows, args)[0]
    losses, seconds = [], []
    for batch in _train_schedule(args, rows):
        start = time.perf_counter()
        losses.append(_keras_step(model, batch))
        seconds.append(time.perf_counter() - start)
    result.update(_curve(losses, args, rows), median_step_seconds=statistics.median(seconds[1:]),
                  step_seconds=seconds)
    if args.part == "classifier":
        result["accuracy_after"] = _evaluate(predict, rows, args)[0]
        device = _loaded(args, _load_dict(paths["device"]))
        device_predict = lambda x: device.predict_on_batch(x)  # noqa: E731
        _, logits = _evaluate(device_predict, rows, args)
        litert_logits = np.load(os.path.join(args.work, "litert_eval_logits.npy"))
        result["load_adapters_max_abs_diff"] = float(np.max(np.abs(logits - litert_logits)))
    else:
        device = _loaded(args, _load_dict(paths["device"]))
        batch = next(_batches(rows, args.batch_size, "train/"))
        inputs, _, _ = _split(batch)
        keras_logits = np.asarray(device.predict_on_batch(inputs))
        litert = _litert_logits(args, inputs)
        result["load_adapters_max_abs_diff"] = float(np.max(np.abs(keras_logits - litert)))
    return result


def _litert_logits(args, inputs):
    """LiteRT's `infer` with the device-trained factors, restored."""
    artifact = LiteRTArtifact(_paths(args)["artifact"], args.threads)
    factors = _load_dict(_paths(args)["device"])
    names = {f["key"]: f["name"] for f in artifact.metadata["factors"]}
    artifact.runners["restore"](**{names[k]: v.astype(np.float32) for k, v in factors.items()})
    return artifact.infer(inputs)


# === Stage: timing (both in one process, interleaved) ===


def stage_timing(args):
    paths = _paths(args)
    rows = _load_rows(args)
    batch = next(_batches(rows, args.batch_size, "train/"))
    inputs, labels, loss_mask = _split(batch)
    artifact = LiteRTArtifact(paths["artifact"], args.threads)
    model = _keras_model(args, _load_dict(paths["initial"]))
    for _ in range(2):  # warm-up: tracing, first allocations
        artifact.train(inputs, labels, loss_mask)
        _keras_step(model, batch)
    litert, keras_ = [], []
    for _ in range(args.timing_reps):
        start = time.perf_counter()
        artifact.train(inputs, labels, loss_mask)
        litert.append(time.perf_counter() - start)
        start = time.perf_counter()
        _keras_step(model, batch)
        keras_.append(time.perf_counter() - start)
    lm, km = statistics.median(litert), statistics.median(keras_)
    return {"litert_median_seconds": lm, "keras_median_seconds": km,
            "litert_over_keras": lm / km, "reps": args.timing_reps,
            "litert_seconds": litert, "keras_seconds": keras_}


STAGE_FUNCTIONS = {"export": stage_export, "litert": stage_litert,
                   "keras": stage_keras, "timing": stage_timing}

if __name__ == "__main__":
    sys.exit(main())
