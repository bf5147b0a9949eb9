"""Renders RESULTS.md: every table, the profile and what bounds the step."""

from benchmarks import decode_bound
from benchmarks import generation
from benchmarks import quantized_base
from benchmarks import recipe_epoch
from benchmarks import report
from benchmarks.report import _f
from benchmarks.report import _table
from benchmarks.report import get


def _largest(values, count):
    return sorted(values.items(), key=lambda item: -item[1])[:count]


def _share(part, whole):
    return _f(None if part is None or not whole else 100 * part / whole, ".0f") + "%"


def profile_section(profile):
    if get(profile, "phases_ms") is None:
        return f"Not measured: {report._skipped(profile)}"
    p = profile["phases_ms"]
    step = p["lora_step"]
    rows = [
        ["forward (training mode, loss)", _f(p["lora_forward"], ".0f"),
         _share(p["lora_forward"], step), _f(p["floor_forward"], ".0f")],
        ["backward", _f(p["lora_forward_backward"] - p["lora_forward"], ".0f"),
         _share(p["lora_forward_backward"] - p["lora_forward"], step),
         _f(p["floor_forward_backward"] - p["floor_forward"], ".0f")],
        ["optimizer + step bookkeeping",
         _f(step - p["lora_forward_backward"], ".0f"),
         _share(step - p["lora_forward_backward"], step),
         _f(p["floor_step"] - p["floor_forward_backward"], ".0f")],
        ["whole step", _f(step, ".0f"), "100%", _f(p["floor_step"], ".0f")],
    ]
    trace = profile["trace"]
    ops = trace["op_ms_per_step"]
    by_type = _table(["op type", "ms/step", "share of op time"],
                     [[k, _f(v, ".0f"), _share(v, ops)]
                      for k, v in _largest(trace["by_type"], 8)])
    by_component = _table(["layer (all 6 blocks)", "ms/step", "share of op time"],
                          [[k, _f(v, ".0f"), _share(v, ops)]
                           for k, v in _largest(trace["by_component"], 10)])
    micro = profile["adapter_microbench"]
    micro_rows = [[k, _f(v, ".2f"), _f(micro["overhead_ms"].get(k), "+.2f"),
                   _f(None if k == "frozen" else
                      micro["overhead_ms"][k] * report.ADAPTED_LAYERS, ".0f")]
                  for k, v in micro["median_ms"].items()]
    return "\n\n".join([
        "Phases of one LoRA step (medians, ms; `floor` = the same model "
        "without adapters, every block frozen, only the embedding layer norm "
        "and the head trainable, so its backward pass still crosses all six "
        "blocks):",
        _table(["phase", "LoRA ms", "share", "floor ms"], rows),
        f"Op time in a `tf.profiler` trace of the LoRA step (summed over "
        f"threads: {ops:,.0f} ms/step; phases: "
        + ", ".join(f"{k} {_f(v, '.0f')}" for k, v in trace["by_phase"].items())
        + "):",
        by_type,
        by_component,
        f"One query projection `{tuple(micro['shape'])} -> "
        f"{tuple(micro['shape'][:2])} x (12, 32)`, forward + backward, alone "
        "(`benchmarks/adapter_math.py`; `klr_flat` = the same factors applied "
        "to the input reshaped to 2-D):",
        _table(["variant", "median ms", "vs frozen", "x 12 adapters, ms/step"],
               micro_rows),
    ])


def bounds_paragraph(results):
    """What bounds the LoRA step, in numbers from this run."""
    profile = get(results, "profile")
    p = get(profile, "phases_ms")
    if p is None:
        return "The profile was not run."
    step, floor = p["lora_step"], p["floor_step"]
    flops = profile["flops"]
    micro = profile["adapter_microbench"]["overhead_ms"]
    trace = profile["trace"]
    frozen_ms = sum(v for k, v in trace["by_component"].items()
                    if k.startswith("feedforward") or k in ("key", "attention_output",
                                                            "attention_core"))
    klr_total = micro["klr"] * report.ADAPTED_LAYERS
    flat_total = micro["klr_flat"] * report.ADAPTED_LAYERS
    saving = klr_total - flat_total
    text = [
        f"The LoRA step ({step:.0f} ms) is {_share(p['lora_forward'], step)} "
        f"forward and {_share(p['lora_forward_backward'] - p['lora_forward'], step)} "
        f"backward; the optimizer over {get(results, 'train_step', 'klr_lora', 'trainable_params') or 0:,} "
        f"weights is {_share(step - p['lora_forward_backward'], step)}. "
        f"The floor model, which has no adapter but still back-propagates "
        f"through all six frozen blocks, takes {floor:.0f} ms: "
        f"{_share(floor, step)} of the LoRA step. In the trace, the frozen "
        f"feed-forward layers, the key and output projections and the "
        f"attention core (QK, softmax, dropout, AV) take "
        f"{_share(frozen_ms, trace['op_ms_per_step'])} of op time, the adapter "
        f"ops (both factors, forward and backward, 12 layers) "
        f"{_share(trace['adapter_ops_ms'], trace['op_ms_per_step'])}. "
        f"Analytically the adapters are "
        f"{100 * flops['adapter_share_of_lora_step']:.1f}% of the LoRA step's "
        f"FLOPs and the attention products "
        f"{100 * flops['attention_share_of_lora_step']:.0f}%; a LoRA step needs "
        f"{flops['lora_vs_full']:.2f}x the FLOPs of a full step (no weight "
        f"gradients for frozen kernels), the floor any LoRA implementation on "
        f"this graph can reach.",
        ("So the step is bound by the frozen forward pass and the backward "
         "pass through the activations of the six blocks, not by the adapter "
         "math. " if floor >= 0.85 * step else
         f"The adapters cost {_share(step - floor, step)} of the step, more "
         f"than their FLOPs suggest. ")
        + f"The adapters' own measurable cost: one adapted query projection "
        f"adds {micro['klr']:.2f} ms to forward + backward (x 12 = "
        f"{klr_total:.0f} ms/step, {_share(klr_total, step)}), against "
        f"{micro['keras']:.2f} ms for Keras' `enable_lora`. Applying the "
        f"factors to the input flattened to 2-D (`(batch*seq, 384) @ A @ B`, "
        f"then reshape) adds {micro['klr_flat']:.2f} ms"
        + (f": the 3-D einsum's gradient for `A` runs as a batched matmul "
           f"over the batch rows followed by a sum, instead of one "
           f"`(384, batch*seq) @ (batch*seq, 8)` matmul. Switching "
           f"`KernelLayout.apply_factors` to the 2-D form (where the kernel's "
           f"input axes are the input's trailing axes, as in every BERT "
           f"projection) would save about {saving:.0f} ms/step "
           f"({_share(saving, step)})." if saving > 0 else
           ", no faster: the einsum form is not a bottleneck."),
    ]
    dropout = dropout_sentence(results)
    if dropout:
        text.append(dropout)
    return "\n\n".join(text)


def dropout_sentence(results):
    """What dropout costs the LoRA step, and its GEMM share without it."""
    p = get(results, "profile", "phases_ms") or {}
    if p.get("no_dropout_step") is None:
        return None
    step, bare = p["lora_step"], p["no_dropout_step"]
    lora_flops = get(results, "profile", "flops", "lora_step")
    gemm = report.gemm_flops_per_second(results)
    shares = ""
    if lora_flops and gemm:
        with_dropout = lora_flops / (step / 1e3) / gemm
        without = lora_flops / (bare / 1e3) / gemm
        verdict = ("the 70% target is met in this run" if with_dropout >= 0.70
                   else "the 70% target lies beyond the same model with its "
                   "dropout" if without >= 0.70 else
                   "the 70% target lies beyond even the step without dropout")
        shares = (f" At this run's float32 GEMM throughput (median) the LoRA "
                  f"step runs at {100 * with_dropout:.0f}% of it in the profile, "
                  f"and would run at {100 * without:.0f}% with dropout off: "
                  f"{verdict}.")
    return (f"Dropout (Keras' `Dropout` layers of the model, rate 0.1 on the "
            f"attention probabilities and hidden states: random numbers, masks "
            f"and scaling, forward and backward) costs {step - bare:.0f} ms of "
            f"the LoRA step ({_share(step - bare, step)}): the same step with "
            f"every Dropout layer at rate 0 takes {bare:.0f} ms." + shares)


# The order of `keras_lowrank.runs.progress.STAGES` (results.json sorts
# its keys; importing the pipeline here would import TensorFlow).
_STAGES = ("data", "model", "train", "evaluate", "export", "report")


def _stage_order(name):
    return (_STAGES.index(name) if name in _STAGES else len(_STAGES), name)


def pipeline_cpu_paragraph(results):
    """The `finetune` epoch's CPU time by stage, user and system."""
    epoch = get(results, report.FINETUNE_ROW)
    stages = get(epoch, "stage_cpu_seconds")
    if not stages:
        return f"The finetune pipeline was not measured ({report._skipped(epoch)})."
    share = report.pipeline_system_share(stages)
    return (
        f"`finetune` pipeline, {epoch['examples']['train']:,} training and "
        f"{epoch['examples']['validation']:,} validation sentences, 1 epoch "
        f"({epoch['steps']} steps, batch {epoch['batch_size']}, padded to each "
        f"batch's longest row up to {epoch['sequence_length']}; "
        f"{epoch['real_tokens']:,} real of {epoch['padded_tokens']:,} padded "
        f"tokens), trained in {get(epoch, 'precision', 'train') or 'float32'}: "
        f"{epoch['train_seconds']:.0f} s in the train stage, "
        f"{epoch['total_seconds']:.0f} s in all. CPU by stage, user / system "
        "seconds: " + ", ".join(
            f"{name} {stages[name]['user']:.1f} / {stages[name]['system']:.1f}"
            for name in sorted(stages, key=_stage_order))
        + f"; system {_f(None if share is None else 100 * share, '.1f')}% of "
        f"the pipeline's CPU time (target < "
        f"{100 * report.SYSTEM_SHARE_TARGET:.0f}%)."
    )


def _latency_cell(entry, key):
    timing = (entry.get("latency_by_length") or {}).get(key)
    if timing is None:
        return "-"
    return f"{timing['ms']:.2f} ms at {timing['tokens']}"


def _accuracy_cell(entry):
    if entry.get("accuracy") is None:
        return "-"
    drift = 100 * (entry["accuracy"] - entry["keras"])
    return (f"{entry['accuracy']:.4f} ({drift:+.2f} pt)"
            + (" **refused**" if entry.get("refused") else ""))


def exports_table(results):
    """Format x quantization: size, batch-1 latency at the median and the
    maximum token length, accuracy in the runtime next to Keras'."""
    exports = get(results, "exports")
    formats = get(exports, "formats") or {}
    if any("latency_ms_batch_1" in entry for entry in formats.values()):
        return report.exports_table(results)  # a run from before the accuracy rows
    order = [name for name in get(results, "settings", "exports") or () if name in formats]
    rows = []
    for name in order + sorted(set(formats) - set(order)):
        entry = formats[name]
        if "error" in entry:
            rows.append([name, f"failed: {entry['error'][:200]}"] + [""] * 7)
            continue
        labels = "-"
        if entry.get("labels_equal") is not None:
            labels = f"{entry['labels_equal']}/{entry['eval_examples']}"
        size = entry.get("size")  # none when export refused it
        rows.append([
            name, entry["name"], _f(None if size is None else size / 1e6, ".1f"),
            _latency_cell(entry, "median"), _latency_cell(entry, "max"),
            _accuracy_cell(entry), _f(entry.get("keras"), ".4f"), labels,
            entry.get("runtime", "-"),
        ])
    return _table(["export", "format/quantize", "size MB",
                   "batch 1, median length (ms at tokens)",
                   "batch 1, max length (ms at tokens)",
                   "accuracy in the runtime (vs Keras)", "Keras accuracy",
                   "labels = Keras'", "runtime"], rows)


def exports_paragraph(results):
    """How the export table was measured, with this run's numbers."""
    exports = get(results, "exports")
    if get(exports, "eval_examples") is None:
        return ("`keras_lowrank.exporters.export`, verified against Keras in the "
                "runtime that runs the artifact; latency at batch 1, sequence "
                f"length {get(exports, 'sequence_length')}.")
    return (
        "`keras_lowrank.exporters.export` through `export/measure_artifacts.py`'s "
        "`export_row`: each artifact runs in its own runtime (LiteRT, ONNX "
        "Runtime, MediaPipe's `TextClassifier` on raw strings), judged on the "
        f"first {exports['eval_examples']} MR test sentences (capped for time; "
        "`docs/export.md` has the whole split on the fine-tuned demo "
        f"classifier) at up to {exports['sequence_length']} tokens; the "
        f"calibrated modes calibrate on {exports['calibration_examples']} "
        "training sentences. The adapters are random and the head untrained, "
        "so accuracy is near chance: what counts is each runtime's distance "
        "from Keras. Latency: batch 1, export's median timing on the first "
        "eval sentences, at their median token length and at the maximum "
        "(MediaPipe always runs its fixed length, tokenizer included). "
        "`labels = Keras'`: eval sentences MediaPipe gives Keras' label "
        "(export refuses a float32 artifact below 99.5%); **refused**: more "
        "than 1.0 point below Keras, so export wrote nothing."
    )


def _busy_warning(machine):
    loads = [*machine["load_average_at_start"], *machine.get("load_average_at_end", ())]
    if max(loads) <= 0.5 * machine["cores_usable"]:
        return ""
    return (f" **The machine was busy (load average up to {max(loads):.1f} on "
            f"{machine['cores_usable']} cores): timings are noisy.**")


def render(results):
    ratio = {k: v for k, v in results["ratios"].items()}
    s = results["settings"]
    machine = results["machine"]
    note = results.get("note")
    parts = ["# keras_lowrank benchmarks: MiniLM LoRA vs full fine-tuning"]
    if note:
        parts.append(f"> **{note}**")
    parts += [
        f"Reproduce: `{results['command']}`"
        + (" (`make bench`)" if results["command"] == "python benchmarks/run.py"
           else "")
        + ". Machine: "
        f"{machine['cpu_model']}, {machine['cores_usable']} cores, "
        f"{(machine['ram_bytes'] or 0) / 2**30:.0f} GiB RAM; Python "
        f"{machine['python']}, TensorFlow {machine['versions']['tensorflow']}, "
        f"Keras {machine['versions']['keras']}, keras-hub "
        f"{machine['versions']['keras-hub']}; {machine['date']}; load average "
        f"at start {', '.join(f'{x:.1f}' for x in machine['load_average_at_start'])}; "
        f"commit {machine['git_commit']}. Whole run: {results['wall_s'] / 60:.1f} min."
        + _busy_warning(machine),
        f"Model: all-MiniLM-L6-v2 as `keras_hub.models.BertTextClassifier` "
        f"(2 classes). Each configuration runs in its own process; peak RSS is "
        f"that process's `ru_maxrss` (model loading included). Training step: "
        f"compiled `train_on_batch`, AdamW, batch {s['batch_size']} x "
        f"{s['sequence_length']} tokens, XLA {'on' if s['xla'] else 'off'}, "
        f"{s['warmup_steps']} warm-up + {s['steps']} timed steps. LoRA: rank "
        f"{s['rank']}, alpha = rank, query and value.",
        "## Targets for (b) keras_lowrank LoRA",
        report.targets_table(results["targets"]),
        "## Training step",
        report.step_table(results),
        "Other ratios: " + ", ".join(
            f"`{k}` {_f(v)}" for k, v in ratio.items()
            if k not in {t["name"] for t in results["targets"]}),
        "## On an int8 / int4 base",
        quantized_base.markdown(results.get("quantized_step")),
        "## FLOPs, throughput and CPU time",
        report.gemm_line(results) + " FLOPs are analytic (`benchmarks/flops.py`: "
        "matrix products only; frozen kernels get input gradients, no weight "
        "gradients); tokens/s counts padded tokens; CPU time is the process's "
        "(all threads) over the timed steps, from `getrusage`.",
        report.compute_table(results),
        pipeline_cpu_paragraph(results),
        "## Test accuracy on MR",
        f"{s['epochs']} epochs on the train split, batch {s['batch_size']}, "
        f"sequence length {s['train_sequence_length']}, same seed and data "
        f"order; full fine-tuning at its usual learning rate.",
        report.accuracy_table(results),
        recipe_epoch.HEADING,
        recipe_epoch.markdown(results),
        "## Inference latency",
        f"`{get(results, 'latency', 'method')}`, sequence length "
        f"{get(results, 'latency', 'sequence_length')}, models timed round robin. "
        f"Merged vs adapted max abs diff: "
        f"{_f(get(results, 'latency', 'merged_vs_adapted_max_abs_diff'), '.2e')}.",
        report.latency_table(results),
        "## Exports of the merged model",
        exports_paragraph(results),
        exports_table(results) if get(results, "exports", "formats")
        else f"Not measured: {report._skipped(get(results, 'exports'))}",
        "## Generation: LiteRT decode vs Keras generate()",
        generation.markdown(results.get("generation")),
        "### Decode against the memory bound",
        decode_bound.markdown(results),
        "## Where the LoRA step's time goes",
        profile_section(get(results, "profile")),
        "### What bounds the LoRA step",
        bounds_paragraph(results),
    ]
    errors = results.get("errors") or {}
    if errors:
        parts += ["## Errors", "\n".join(f"- `{k}`: {v}" for k, v in errors.items())]
    return "\n\n".join(parts) + "\n"
