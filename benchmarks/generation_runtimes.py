"""LiteRT-LM and ONNX Runtime GenAI in the generation child, beside Keras.

The same model goes through `export_litertlm` (a `.litertlm` bundle, run
in the LiteRT-LM engine through its Python API, `litert_lm`) and
`export_onnx_genai` (a folder run by `onnxruntime_genai`); each export
checks its runtime against Keras' greedy tokens (its report gives the
agreement columns). The timed runs then go into the child's interleaved
rounds (`export_runners(...)[1][name](index)` times prompt `index` once):

- LiteRT-LM takes raw text and prepends the start token itself, so it
  gets the prompts as text (SmolLM2: `generation.PROMPTS`; tiny: the
  prompt ids as words of a word-level tokenizer, which the engine maps
  back to the same ids); its speed and time to first token are the
  engine's own (`Session.get_benchmark_info`). Its prompts are one token
  longer than the others' (the start token) where they do not begin with
  it.
- GenAI takes the same prompt ids as Keras and the LiteRT runner;
  `GenAIGenerator.greedy` times prefill to the first token, then decode.
  Its tokens are compared with Keras' in every timed run
  (`timed_agreement`).

Both stop at a stop token, where Keras `generate()` (no stop token here)
goes on: a run that stops early decodes fewer tokens.

The tiny model needs a `tokenizer.json` with a chat template: LiteRT-LM
gets a word-level one (`w17` <-> 17, as tests/generation/test_litertlm.py
builds it), GenAI a byte-level BPE one (it reads no other kind; as
tests/generation/test_onnx_genai.py builds it), both of the model's 256 ids.
"""

import json
import os
import tempfile
import time

import numpy as np

from benchmarks import decode_bound

SPECIAL = ("<pad>", "<bos>", "<eos>")
# SmolLM2's template shape in the tiny tokenizers' words.
WORD_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{{ 'w3 ' + message['role'] + ' ' + "
    "message['content'] + ' w4 ' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'w5' }}{% endif %}")
BPE_TEMPLATE = (
    "{% for m in messages %}<bos>{{ m['role'] }} {{ m['content'] }}<eos>"
    "{% endfor %}{% if add_generation_prompt %}<bos>assistant {% endif %}")
# Text prompts of the tiny GenAI export's check: ASCII, one id per byte.
BPE_PROMPTS = ("hello there", "The capital of France is")


def _write_config(folder, config):
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as file:
        json.dump(config, file)


def tiny_word_tokenizer(folder, size):
    """A word-level `tokenizer.json` of `size` ids (`w3 w17` <-> [3, 17])
    and its `tokenizer_config.json`, in `folder`; returns the first's path."""
    from tokenizers import Tokenizer
    from tokenizers import decoders
    from tokenizers import models
    from tokenizers import pre_tokenizers

    os.makedirs(folder, exist_ok=True)
    vocab = {token: i for i, token in enumerate(SPECIAL)}
    vocab.update({f"w{i}": i for i in range(len(SPECIAL), size)})
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.decoder = decoders.WordPiece(prefix="##")  # joins with spaces
    tokenizer.add_special_tokens(list(SPECIAL))
    path = os.path.join(folder, "tokenizer.json")
    tokenizer.save(path)
    _write_config(folder, {"chat_template": WORD_TEMPLATE, "bos_token": "<bos>",
                           "eos_token": {"content": "<eos>"}})
    return path


def tiny_bpe_tokenizer(folder, size):
    """A byte-level BPE `tokenizer.json` of `size` (at most 256) ids:
    `<pad> <bos> <eos>`, then id b for byte b (3 <= b < size), and its
    `tokenizer_config.json`; returns the first's path."""
    from tokenizers import Tokenizer
    from tokenizers import decoders
    from tokenizers import models
    from tokenizers import pre_tokenizers

    os.makedirs(folder, exist_ok=True)
    byte_chars = _bytes_to_unicode()
    vocab = {token: i for i, token in enumerate(SPECIAL)}
    vocab.update({byte_chars[b]: b for b in range(len(SPECIAL), size)})
    tokenizer = Tokenizer(models.BPE(vocab, [], unk_token="<pad>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(list(SPECIAL))
    path = os.path.join(folder, "tokenizer.json")
    tokenizer.save(path)
    _write_config(folder, {"tokenizer_class": "GPT2Tokenizer", "bos_token": "<bos>",
                           "eos_token": "<eos>", "pad_token": "<pad>",
                           "chat_template": BPE_TEMPLATE})
    return path


def _bytes_to_unicode():
    """GPT-2's byte -> printable character map of byte-level BPE, as a
    list indexed by byte."""
    keep = {*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
            *range(ord("®"), ord("ÿ") + 1)}
    others = iter(range(256, 512))
    return [chr(b) if b in keep else chr(next(others)) for b in range(256)]


def onnx_decode_bytes(path) -> dict:
    """Bytes of the initializers of the ONNX model at `path` (without
    loading an external data file): all of them, and as read per decoded
    token, a table a `Gather` (axis 0) looks rows up in counting one row
    (the token embedding); KV cache left out (GenAI's grows with the
    past, `kv_cache_bytes` None)."""
    import onnx
    from onnx import helper

    model = onnx.load(path, load_external_data=False)
    sizes = {t.name: int(np.prod(t.dims, dtype=np.int64))
             * np.dtype(helper.tensor_dtype_to_np_dtype(t.data_type)).itemsize
             for t in model.graph.initializer}
    rows = {t.name: int(t.dims[0]) for t in model.graph.initializer if t.dims}
    looked_up, whole = {}, set()
    for node in model.graph.node:
        axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
        for position, name in enumerate(node.input):
            if name not in sizes:
                continue
            if node.op_type == "Gather" and position == 0 and axis == 0:
                looked_up[name] = sizes[name] // max(rows[name], 1)
            else:
                whole.add(name)
    per_token = {**looked_up, **{name: sizes[name] for name in whole}}
    return {"constant_bytes": sum(sizes.values()),
            "bytes_per_token": sum(per_token.values()),
            "lookup_table_bytes": sum(sizes[n] for n in looked_up if n not in whole),
            "kv_cache_bytes": None}


def litertlm_decode_bytes(bundle, kv_cache_bytes) -> dict:
    """`decode_bound.litert_decode_bytes` of the bundle's TFLite model
    (its `decode` signature), with `kv_cache_bytes` (the bundle takes the
    cache as one input per layer and kind, which that count does not
    name; the same float32 cache as the LiteRT artifact's)."""
    from keras_lowrank.generation.litertlm_bundle import read_bundle_model

    with tempfile.TemporaryDirectory(prefix="klr_bench_litertlm_") as folder:
        path = os.path.join(folder, "model.tflite")
        with open(path, "wb") as file:
            file.write(read_bundle_model(bundle))
        counted = decode_bound.litert_decode_bytes(path)
    return {**counted, "kv_cache_bytes": kv_cache_bytes}


def _check_entry(report, start):
    return {"size_bytes": report.size_bytes, "agreement": report.agreement,
            "next_token_agreement": report.next_token_agreement,
            "check_time_to_first_token_ms": report.time_to_first_token_ms,
            "check_decode_tokens_per_s": report.decode_tokens_per_s,
            "runtime": report.runtime, "export_s": time.perf_counter() - start}


class _LitertlmRunner:
    """Times one prompt's greedy generation in a LiteRT-LM engine."""

    def __init__(self, engine, texts, new_tokens):
        from keras_lowrank.generation.litertlm_check import greedy_text

        self.engine, self.texts, self.new_tokens = engine, texts, new_tokens
        self._greedy_text = greedy_text
        for text in texts:  # warm: the first session pays the setup
            greedy_text(engine, text, new_tokens)

    def __call__(self, index):
        _, info = self._greedy_text(self.engine, self.texts[index], self.new_tokens)
        speed = (info.last_decode_tokens_per_second
                 if info.last_decode_token_count > 1 else None)
        return speed, 1000 * info.time_to_first_token_in_second, None


class _GenAIRunner:
    """Times one prompt's greedy generation in ONNX Runtime GenAI."""

    def __init__(self, generator, prompts, new_tokens):
        self.generator, self.prompts, self.new_tokens = generator, prompts, new_tokens
        for prompt in prompts:  # warm
            generator.greedy(prompt, new_tokens)

    def __call__(self, index):
        run = self.generator.greedy(self.prompts[index], self.new_tokens)
        return run.decode_tokens_per_s, 1000 * run.time_to_first_token_s, run.tokens


def export_runners(model, settings, folder, stack, *, prompts, texts, tokenizer,
                   new_tokens, max_length, prefill_lengths, threads, kv_cache_bytes):
    """Exports `model` for LiteRT-LM and GenAI and opens each runtime.

    Args:
        model: the child's keras-hub causal LM (float32).
        settings: the bench `Settings` (`generation_quantize`).
        folder: str. Where the bundles and folders go.
        stack: `contextlib.ExitStack` that closes the engines.
        prompts: list of list of int. Keras' prompt ids (GenAI's too).
        texts: list of str. The same prompts as LiteRT-LM gets them.
        tokenizer: `{"litertlm": path, "genai": path, "genai_prompts":
            texts, "genai_start": id or absent}`: the tokenizer.json of
            each, the text prompts of GenAI's export check and the start
            token its check puts before them.
        new_tokens, max_length, prefill_lengths, threads: as the child's.
        kv_cache_bytes: int. The float32 cache of `max_length` positions.

    Returns:
        `(entries, runners)`: `{name: result entry}` (an `"error"` entry
        where an export or its runtime failed, so that the other rows are
        still measured) and `{name: runner}`, `runner(index) ->
        (decode tokens/s, first token ms, tokens or None)`.
    """
    from keras_lowrank.generation import export_litertlm
    from keras_lowrank.generation import export_onnx_genai
    from keras_lowrank.generation.litertlm_check import open_engine
    from keras_lowrank.generation.onnx_genai_check import GenAIGenerator
    from keras_lowrank.lm_finetune.lm_finetune_options import DEFAULT_TFLITE_KEEP_FLOAT

    entries, runners = {}, {}
    for quantize in (None, *[q for q in settings.generation_quantize if q == "dynamic"]):
        name = f"litertlm_{quantize or 'float32'}"
        start = time.perf_counter()
        try:
            report = export_litertlm(
                model, os.path.join(folder, f"{name}.litertlm"),
                max_length=max_length, prefill_lengths=prefill_lengths,
                tokenizer=tokenizer["litertlm"], prompts=list(texts),
                max_new_tokens=new_tokens, quantize=quantize,
                min_agreement=0.0,  # int8: measured, not required
                # As the LiteRT int8 row: the lookup table in float32.
                keep_float=DEFAULT_TFLITE_KEEP_FLOAT if quantize else ())
            entries[name] = {**_check_entry(report, start),
                             "decode_bytes": litertlm_decode_bytes(report.path,
                                                                   kv_cache_bytes)}
            engine = stack.enter_context(open_engine(report.path, max_length, threads))
            runners[name] = _LitertlmRunner(engine, list(texts), new_tokens)
        except Exception as error:  # noqa: BLE001 - recorded, the others go on
            entries[name] = {"error": f"{type(error).__name__}: {error}"[:500]}
    name, start = "genai_float32", time.perf_counter()
    try:
        report = export_onnx_genai(
            model, os.path.join(folder, name), max_length=max_length,
            tokenizer=tokenizer["genai"], prompts=list(tokenizer["genai_prompts"]),
            start_token_id=tokenizer.get("genai_start"), max_new_tokens=new_tokens)
        entries[name] = {**_check_entry(report, start), "model_bytes": report.model_bytes,
                         # Counted from model.onnx's initializers: a first
                         # estimate (no decode-only graph to count apart).
                         "decode_bytes": onnx_decode_bytes(
                             os.path.join(report.folder, "model.onnx"))}
        runners[name] = _GenAIRunner(GenAIGenerator(report.folder), prompts, new_tokens)
    except Exception as error:  # noqa: BLE001 - recorded, the others go on
        entries[name] = {"error": f"{type(error).__name__}: {error}"[:500]}
    return entries, runners


def timed_agreement(tokens, keras_tokens):
    """`(matching, compared)`: of Keras' first `len(tokens)` tokens (the
    runtime's stop where it picked a stop token, which `generate()` here
    does not), those before the first place `tokens` differs."""
    expected = keras_tokens[:len(tokens)]
    matching = next((i for i, (a, b) in enumerate(zip(tokens, expected)) if a != b),
                    len(expected))
    return matching, len(expected)
