"""`make bench`: runs every measurement, writes results.json and RESULTS.md.

Each measurement runs in its own subprocess (`python -m benchmarks.<child>`),
in order: the shared batch, the machine's GEMM throughput and memory
bandwidth (a STREAM triad), the training step of each configuration
(`--rounds` times, interleaved), the LoRA step on an int8 / int4 base
(`quantized_step.py`, round robin in one process per model), PEFT, the
profile, MR accuracy, one epoch of the `finetune` pipeline and one of
keras-hub's `enable_lora` recipe on the same data (`keras_recipe_epoch.py`),
inference latency, exports and generation (LiteRT decode tokens/s vs
Keras `generate()`, each set against the bound bandwidth / bytes read per
token: `decode_bound.py`).
A failing child is recorded and the run goes on; each child's user and
system CPU time (`getrusage` of the finished child) is recorded with its
result as `process_cpu_seconds`.

Usage:
    .venv/bin/python benchmarks/run.py            # the full bench, ~25 min
    .venv/bin/python benchmarks/run.py --quick    # smoke test, results in _work
    .venv/bin/python benchmarks/run.py --torch-python /tmp/benchvenv/bin/python
"""

import argparse
import dataclasses
import os
import resource
import shlex
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks import child  # noqa: E402
from benchmarks import decode_bound  # noqa: E402
from benchmarks import machine  # noqa: E402
from benchmarks import quantized_base  # noqa: E402
from benchmarks import report  # noqa: E402
from benchmarks import results_md  # noqa: E402
from benchmarks.settings import KERAS_CONFIGS  # noqa: E402
from benchmarks.settings import PEFT_CONFIG  # noqa: E402
from benchmarks.settings import Settings  # noqa: E402

SECTIONS = ("gemm", "bandwidth", "step", "quantized", "peft", "profile", "accuracy",
            "finetune", "latency", "exports", "generation")
# TensorFlow's defaults otherwise: oneDNN stays on, as users run it (it makes
# a MiniLM training step ~1.6x faster on this CPU than TF_ENABLE_ONEDNN_OPTS=0).
CHILD_ENV = {"KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3",
             "PYTHONHASHSEED": "0"}
CHILD_TIMEOUT_S = 3600


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny batch, few steps, 64 examples: a smoke test")
    parser.add_argument("--torch-python", default=sys.executable,
                        help="interpreter with torch, transformers and peft "
                             "for the PEFT child (default: this one)")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated subset of {','.join(SECTIONS)}")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run the step children this many times, "
                             "interleaved; timings are pooled")
    parser.add_argument("--xla", action="store_true",
                        help="compile Keras training steps with XLA")
    parser.add_argument("--steps", type=int, help="timed training steps")
    parser.add_argument("--epochs", type=int, help="epochs of the accuracy runs")
    parser.add_argument("--out-dir", help="where results.json and RESULTS.md go "
                        "(default: benchmarks/, or benchmarks/_work/quick with --quick)")
    parser.add_argument("--note", help="a line put at the top of RESULTS.md")
    parser.add_argument("--render", metavar="RESULTS_JSON",
                        help="only rewrite RESULTS.md next to this results.json")
    return parser.parse_args(argv)


def make_settings(args):
    overrides = {"xla": args.xla}
    if args.steps is not None:
        overrides["steps"] = args.steps
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    return Settings.quick(**overrides) if args.quick else Settings(**overrides)


class Runner:
    """Runs children with one settings file, logging each to the work folder."""

    def __init__(self, work, settings, start):
        self.work, self.start = work, start
        self.settings_path = os.path.join(work, "settings.json")
        with open(self.settings_path, "w") as file:
            file.write(settings.to_json())

    def run(self, module, config=None, python=sys.executable, tag=""):
        name = "_".join(filter(None, [module, config, tag]))
        out = os.path.join(self.work, f"{name}.json")
        if os.path.exists(out):
            os.remove(out)
        command = [python, "-m", f"benchmarks.{module}",
                   "--settings", self.settings_path, "--out", out]
        command += ["--config", config] if config else []
        env = {**os.environ, **CHILD_ENV,
               "PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))}
        log_path = os.path.join(self.work, f"{name}.log")
        cpu_before = child.cpu_seconds(resource.RUSAGE_CHILDREN)
        with open(log_path, "w") as log:
            try:
                subprocess.run(command, cwd=ROOT, env=env, stdout=log,
                               stderr=subprocess.STDOUT, timeout=CHILD_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                pass
        result = _read_json(out) or {"error": f"no result; log: {log_path}: "
                                              + _tail(log_path)}
        # Children run one at a time: the difference is this child's.
        result["process_cpu_seconds"] = child.cpu_since(
            cpu_before, resource.RUSAGE_CHILDREN)
        self._say(name, result)
        return result

    def _say(self, name, result):
        elapsed = time.perf_counter() - self.start
        detail = result.get("error") or result.get("skipped") or (
            f"median {result['step']['median_s']:.3f} s/step" if "step" in result
            else "done")
        print(f"[{elapsed / 60:5.1f} min] {name}: {detail[:300]} "
              f"(peak RSS {(result.get('peak_rss_bytes') or 0) / 1e6:,.0f} MB, "
              f"{result.get('wall_s', 0):.0f} s)", flush=True)


def _read_json(path):
    import json

    if not os.path.exists(path):
        return None
    with open(path) as file:
        return json.load(file)


def _tail(path, lines=5):
    with open(path, errors="replace") as file:
        return " | ".join(file.read().strip().splitlines()[-lines:])


def pool_rounds(rounds):
    """One step result from several runs of a child: timings pooled."""
    good = [r for r in rounds if "step" in r]
    if not good:
        return rounds[-1]
    merged = dict(good[-1])
    seconds = [s for r in good for s in r["step_seconds"]]
    merged["step"] = child.summarize(seconds)
    merged["step_seconds"] = seconds
    merged["peak_rss_bytes"] = max(r["peak_rss_bytes"] for r in good)
    for key in ("step_cpu_seconds", "process_cpu_seconds"):
        if all(key in r for r in good):
            merged[key] = {kind: sum(r[key][kind] for r in good)
                           for kind in ("user", "system")}
    merged["rounds"] = len(good)
    return merged


def peft_unavailable(python):
    """Why the PEFT child cannot run under `python`, or None."""
    probe = subprocess.run(
        [python, "-c", "import torch, transformers, peft"],
        capture_output=True, text=True,
    )
    if probe.returncode == 0:
        return None
    reason = (probe.stderr.strip().splitlines() or ["import failed"])[-1]
    return (f"{reason} under {python}; pass --torch-python with an interpreter "
            "that has torch, transformers and peft (see benchmarks/README.md)")


def main(argv=None):
    args = parse_args(argv)
    if args.render:
        results = _read_json(args.render)
        path = os.path.join(os.path.dirname(os.path.abspath(args.render)), "RESULTS.md")
        write_text(path, results_md.render(results))
        print(f"Wrote {path}")
        return 0
    start = time.perf_counter()
    settings = make_settings(args)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        raise SystemExit(f"Unknown sections {unknown}. Choose from {list(SECTIONS)}")
    out_dir = args.out_dir or os.path.join(
        ROOT, "benchmarks", "_work/quick" if args.quick else "")
    work = os.path.join(ROOT, "benchmarks", "_work", "quick" if args.quick else "full")
    os.makedirs(work, exist_ok=True)
    os.makedirs(out_dir, exist_ok=True)
    runner = Runner(work, settings, start)
    results = {
        "command": shlex.join(["python", "benchmarks/run.py", *(argv or sys.argv[1:])]),
        "note": args.note,
        "settings": dataclasses.asdict(settings),
        "machine": machine.machine_info(ROOT),
        "train_step": {}, "accuracy": {},
    }
    results["batch"] = runner.run("prepare")
    if "error" in results["batch"]:
        raise SystemExit(f"Could not prepare the batch: {results['batch']['error']}")

    if "gemm" in sections:
        results["gemm"] = runner.run("gemm")
    if "bandwidth" in sections:
        results["bandwidth"] = runner.run("bandwidth")
    if "step" in sections:
        rounds = {config: [] for config in KERAS_CONFIGS}
        for round_index in range(args.rounds):
            for config in KERAS_CONFIGS:
                rounds[config].append(runner.run(
                    "train_step", config, tag=f"r{round_index}" if args.rounds > 1 else ""))
        results["train_step"] = {c: pool_rounds(r) for c, r in rounds.items()}
    if "quantized" in sections:
        results["quantized_step"] = {
            model: runner.run("quantized_step", model)
            for model in quantized_base.MODELS}
    if "peft" in sections:
        reason = peft_unavailable(args.torch_python)
        if reason:
            print(f"peft_step: skipped: {reason}", flush=True)
            results["train_step"][PEFT_CONFIG] = {"skipped": reason}
        else:
            results["train_step"][PEFT_CONFIG] = runner.run(
                "peft_step", PEFT_CONFIG, python=args.torch_python)
    if "profile" in sections:
        results["profile"] = runner.run("profile_step")
    if "accuracy" in sections:
        for config in KERAS_CONFIGS:
            results["accuracy"][config] = runner.run("accuracy", config)
    if "finetune" in sections:
        results["finetune_epoch"] = runner.run("finetune_epoch")
        results["keras_recipe_epoch"] = runner.run("keras_recipe_epoch")
    if "latency" in sections:
        results["latency"] = runner.run("latency")
    if "exports" in sections:
        results["exports"] = runner.run("exports")
    if "generation" in sections:
        results["generation"] = runner.run("generation")

    results["machine"]["load_average_at_end"] = os.getloadavg()
    results["wall_s"] = time.perf_counter() - start
    results["ratios"] = report.ratios(results)
    results.update(results["ratios"])  # the headline ratios at the top level
    results["compute"] = report.compute_rows(results)
    results["decode_bound"] = decode_bound.rows(results)
    results["targets"] = report.targets(results, results["ratios"])
    results["errors"] = collect_errors(results)
    child.write_json(os.path.join(out_dir, "results.json"), results)
    write_text(os.path.join(out_dir, "RESULTS.md"), results_md.render(results))
    print(f"Wrote {out_dir}/results.json and RESULTS.md in "
          f"{results['wall_s'] / 60:.1f} min")
    for check in results["targets"]:
        print(f"  {check['name']}: {check['value']} (target {check['target']}, "
              f"met: {check['met']})")
    return 1 if results["errors"] else 0


def collect_errors(results):
    errors = {}
    for section in ("train_step", "quantized_step", "accuracy"):
        for config, entry in results.get(section, {}).items():
            if isinstance(entry, dict) and "error" in entry:
                errors[f"{section}/{config}"] = entry["error"]
    for section in ("batch", "gemm", "bandwidth", "profile", "finetune_epoch",
                    "keras_recipe_epoch", "latency", "exports", "generation"):
        entry = results.get(section)
        if isinstance(entry, dict) and "error" in entry:
            errors[section] = entry["error"]
    for name, entry in (report.get(results, "exports", "formats") or {}).items():
        if "error" in entry:
            errors[f"exports/{name}"] = entry["error"]
    return errors


def write_text(path, text):
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as file:
        file.write(text)
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
