"""Greedy generation driven entirely from an exported artifact.

Needs only numpy and the artifact's runtime (`ai-edge-litert` for
`.tflite`, `onnxruntime` for `.onnx`), plus `tokenizers` for text: no
TensorFlow, no Keras. `export/generate.py` loads this file by path (with
`generator_spec.py` beside it) on machines that have nothing else;
`export_generator` verifies artifacts with it.

Example:
```python
generator = load_generator("lm.tflite")
result = generator.greedy(prompt_ids, max_new_tokens=32)
result.tokens, result.time_to_first_token_s, result.decode_tokens_per_s
```
"""

import dataclasses
import importlib.util
import mmap
import os
import sys
import time

import numpy as np

if __package__:
    from keras_lowrank.generation.generator_spec import METADATA_KEY
    from keras_lowrank.generation.generator_spec import GeneratorSpec
else:  # loaded by path, without the package (and so without Keras)
    _path = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                         "generator_spec.py")
    _spec = importlib.util.spec_from_file_location("_klr_generator_spec", _path)
    _module = importlib.util.module_from_spec(_spec)
    sys.modules[_spec.name] = _module
    _spec.loader.exec_module(_module)
    METADATA_KEY, GeneratorSpec = _module.METADATA_KEY, _module.GeneratorSpec

# The model's vocabulary may exceed the tokenizer's by fewer ids than this:
# embedding matrices are often padded to a multiple of 64 or 128.
VOCABULARY_PADDING = 128


class PromptTooLongError(ValueError):
    """The prompt does not fit the artifact's cache."""


@dataclasses.dataclass(frozen=True)
class GreedyResult:
    """One greedy generation.

    Args:
        tokens: tuple of int. The generated tokens (a stop token included).
        stopped: str. `"max_new_tokens"`, `"stop_token"` or `"cache_full"`.
        time_to_first_token_s: float. From the start of prefill to the first
            token chosen.
        decode_seconds: float. The decoding steps after the first token.
    """

    tokens: tuple
    stopped: str
    time_to_first_token_s: float
    decode_seconds: float

    @property
    def decode_tokens_per_s(self):
        steps = len(self.tokens) - 1
        return steps / self.decode_seconds if steps and self.decode_seconds else None


class Generator:
    """A generation artifact in its runtime: prefill, decode, greedy loop.

    Subclasses run the graphs (`_prefill_chunks`, `_decode`); this class
    owns the loop, so every format is driven the same way.
    """

    runtime = ""

    def __init__(self, path, spec):
        self.path = path
        self.spec = spec
        # Runtime adapters' factor inputs; zeros give the base model.
        self.adapter = {name: np.zeros(shape, np.float32)
                        for name, shape in spec.adapter_shapes().items()}

    def load_adapter(self, adapter=None):
        """Generates with `adapter` from now on (runtime-adapter artifacts).

        Args:
            adapter: the `.npz` of `write_runtime_adapter`, or a dict of
                its arrays; None: zeros, the base model.

        Raises:
            ValueError: the artifact takes no adapters, or the arrays'
                names or shapes are not its factor inputs.
        """
        shapes = self.spec.adapter_shapes()
        if not shapes:
            raise ValueError(
                f"{self.path} was exported without runtime_adapters=True: it "
                "takes no adapter.")
        if adapter is None:
            self.adapter = {name: np.zeros(shape, np.float32)
                            for name, shape in shapes.items()}
            return
        if isinstance(adapter, (str, os.PathLike)):
            with np.load(adapter) as data:
                adapter = {name: data[name] for name in data.files}
        if sorted(adapter) != sorted(shapes):
            raise ValueError(
                f"The adapter's arrays {sorted(adapter)[:4]}... are not the "
                f"factor inputs of {self.path} ({len(shapes)} arrays, "
                f"{sorted(shapes)[:4]}...).")
        arrays = {}
        for name, shape in shapes.items():
            array = np.asarray(adapter[name], np.float32)
            if array.shape != tuple(shape) or not np.isfinite(array).all():
                raise ValueError(
                    f"Adapter input {name} must be finite float32 of shape "
                    f"{tuple(shape)}. Received: shape {array.shape}")
            arrays[name] = array
        self.adapter = arrays

    def new_cache(self):
        return np.zeros(self.spec.cache_shape, np.float32)

    def check_prompt(self, prompt_ids):
        """The prompt as int32 ids; raises for an empty or too long one."""
        prompt = np.asarray(prompt_ids, dtype=np.int64).reshape(-1)
        if prompt.size == 0:
            raise ValueError("The prompt has no tokens.")
        if prompt.size > self.spec.max_length:
            raise PromptTooLongError(
                f"The prompt has {prompt.size} tokens but {self.path} was "
                f"exported with a cache of {self.spec.max_length} positions; "
                "shorten it or export with a larger max_length."
            )
        bad = prompt[(prompt < 0) | (prompt >= self.spec.vocabulary_size)]
        if bad.size:
            raise ValueError(
                f"Token id {int(bad[0])} is outside the model's vocabulary "
                f"of {self.spec.vocabulary_size}."
            )
        return prompt.astype(np.int32)

    def prefill(self, prompt_ids, cache=None):
        """`(logits (vocabulary,), cache)` after writing the whole prompt."""
        prompt = self.check_prompt(prompt_ids)
        cache = self.new_cache() if cache is None else cache
        return self._prefill_chunks(prompt, cache)

    def decode(self, token_id, index, cache):
        """`(logits (vocabulary,), cache)` after token `token_id` at `index`."""
        return self._decode(np.array([[token_id]], np.int32), index, cache)

    def greedy(self, prompt_ids, max_new_tokens, stop_token_ids=(),
               on_token=None) -> GreedyResult:
        """Greedy generation: the argmax token, step by step.

        Args:
            prompt_ids: sequence of int. At most `spec.max_length` tokens.
            max_new_tokens: int. The most tokens to generate; fewer when a
                stop token comes or the cache is full.
            stop_token_ids: tokens that end generation (kept in the output).
            on_token: optional callable, called with each new token.
        """
        if max_new_tokens < 1:
            raise ValueError(
                f"`max_new_tokens` must be at least 1. Received: {max_new_tokens}")
        stop = set(int(t) for t in stop_token_ids)
        start = time.perf_counter()
        prompt = self.check_prompt(prompt_ids)
        logits, cache = self._prefill_chunks(prompt, self.new_cache())
        tokens = [int(np.argmax(logits))]
        first = time.perf_counter()
        if on_token:
            on_token(tokens[-1])
        index = prompt.size
        stopped = "max_new_tokens"
        while True:
            if tokens[-1] in stop:
                stopped = "stop_token"
                break
            if len(tokens) >= max_new_tokens:
                break
            if index >= self.spec.max_length:
                stopped = "cache_full"
                break
            logits, cache = self.decode(tokens[-1], index, cache)
            tokens.append(int(np.argmax(logits)))
            index += 1
            if on_token:
                on_token(tokens[-1])
        return GreedyResult(
            tokens=tuple(tokens),
            stopped=stopped,
            time_to_first_token_s=first - start,
            decode_seconds=time.perf_counter() - first,
        )


def plan_prefill(length, prefill_lengths, max_length):
    """How a prompt of `length` tokens is written with fixed-length chunks.

    Returns:
        list of `(start, count, chunk_length)`: `count` prompt tokens from
        `start`, right-padded to a prefill signature of `chunk_length`, or
        `chunk_length` 1 for the decode signature. A chunk never passes
        `max_length` (the cache update would be clamped and misplaced);
        near the end, where no prefill length fits, tokens go one by one.
    """
    plan, start = [], 0
    while start < length:
        remaining, room = length - start, max_length - start
        fitting = [n for n in prefill_lengths if n <= room]
        if not fitting:
            plan.append((start, 1, 1))
            start += 1
            continue
        chunk = next((n for n in fitting if n >= remaining), fitting[-1])
        count = min(remaining, chunk)
        plan.append((start, count, chunk))
        start += count
    return plan


class LiteRTGenerator(Generator):
    """A `.tflite` generation artifact in the LiteRT interpreter.

    Args:
        path: the `.tflite` file.
        num_threads: optional. Interpreter threads.
    """

    def __init__(self, path, num_threads=None):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as error:
            raise ImportError(
                "ai-edge-litert is required to run .tflite artifacts: "
                "pip install 'ai-edge-litert==2.3.0'"
            ) from error
        super().__init__(path, read_tflite_spec(path))
        interpreter = Interpreter(model_path=path, num_threads=num_threads)
        keys = interpreter.get_signature_list()
        wanted = ["decode"] + [f"prefill_{n}" for n in self.spec.prefill_lengths]
        missing = [key for key in wanted if key not in keys]
        if missing:
            raise ValueError(f"{path} lacks the signatures {missing}.")
        self._runners = {key: interpreter.get_signature_runner(key)
                         for key in wanted}
        self.runtime = f"ai-edge-litert {_version('ai-edge-litert')} Interpreter"

    def _prefill_chunks(self, prompt, cache):
        spec = self.spec
        for start, count, chunk in plan_prefill(
            prompt.size, spec.prefill_lengths, spec.max_length
        ):
            if chunk == 1:
                logits, cache = self._decode(prompt[None, start:start + 1],
                                             start, cache)
                continue
            token_ids = np.zeros((1, chunk), np.int32)
            token_ids[0, :count] = prompt[start:start + count]
            outputs = self._runners[f"prefill_{chunk}"](
                token_ids=token_ids,
                cache=cache,
                cache_update_index=np.array(start, np.int32),
                last_index=np.array(count - 1, np.int32),
                **self.adapter,
            )
            logits, cache = outputs["logits"][0], outputs["next_cache"]
        return logits, cache

    def _decode(self, token_ids, index, cache):
        outputs = self._runners["decode"](
            token_ids=token_ids,
            cache=cache,
            cache_update_index=np.array(index, np.int32),
            **self.adapter,
        )
        return outputs["logits"][0], outputs["next_cache"]


class ONNXGenerator(Generator):
    """An `.onnx` generation artifact in ONNX Runtime (CPU).

    The graph takes any chunk length: the prompt is written in one call.

    Args:
        path: the `.onnx` file.
        num_threads: optional. Intra-op threads.
    """

    def __init__(self, path, num_threads=None):
        try:
            import onnxruntime
        except ImportError as error:
            raise ImportError(
                "onnxruntime is required to run .onnx artifacts: "
                "pip install 'onnxruntime==1.32.0'"
            ) from error
        options = onnxruntime.SessionOptions()
        if num_threads:
            options.intra_op_num_threads = num_threads
        self._session = onnxruntime.InferenceSession(
            path, options, providers=["CPUExecutionProvider"]
        )
        metadata = self._session.get_modelmeta().custom_metadata_map
        if METADATA_KEY not in metadata:
            raise ValueError(_not_a_generator(path))
        super().__init__(path, GeneratorSpec.from_json(metadata[METADATA_KEY], path))
        self.runtime = f"onnxruntime {onnxruntime.__version__} (CPU)"

    def _run(self, token_ids, index, last_index, cache):
        logits, cache = self._session.run(["logits", "next_cache"], {
            "token_ids": token_ids,
            "cache": cache,
            "cache_update_index": np.array(index, np.int32),
            "last_index": np.array(last_index, np.int32),
            **self.adapter,
        })
        return logits[0], cache

    def _prefill_chunks(self, prompt, cache):
        return self._run(prompt[None, :], 0, prompt.size - 1, cache)

    def _decode(self, token_ids, index, cache):
        return self._run(token_ids, index, 0, cache)


def load_generator(path, num_threads=None, format=None) -> Generator:
    """The artifact at `path` in its runtime.

    Args:
        path: a `.tflite` or `.onnx` file from `export_generator`.
        num_threads: optional. Runtime threads.
        format: `"tflite"` or `"onnx"`; default: from the file's suffix.

    Raises:
        ValueError: an unknown suffix, or a file without generation
            metadata (not written by `export_generator`).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No such artifact: {path}")
    format = format or os.path.splitext(path)[1].lstrip(".")
    if format == "tflite":
        return LiteRTGenerator(path, num_threads)
    if format == "onnx":
        return ONNXGenerator(path, num_threads)
    raise ValueError(
        f"Unrecognized artifact {path!r}: expected a .tflite or .onnx file."
    )


def read_tflite_spec(path) -> GeneratorSpec:
    """The `GeneratorSpec` in a `.tflite` file's model metadata."""
    from ai_edge_litert import schema_py_generated as schema

    with open(path, "rb") as file:
        if file.read(8)[4:] != b"TFL3":
            raise ValueError(f"{path} is not a TFLite flatbuffer.")
        data = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
    with data:
        model = schema.Model.GetRootAs(data, 0)
        for i in range(model.MetadataLength()):
            entry = model.Metadata(i)
            if entry.Name().decode("utf-8") == METADATA_KEY:
                text = model.Buffers(entry.Buffer()).DataAsNumpy().tobytes()
                return GeneratorSpec.from_json(text.decode("utf-8"), path)
    raise ValueError(_not_a_generator(path))


def _not_a_generator(path):
    return (
        f"{path} holds no generation metadata ({METADATA_KEY}): it was not "
        "written by keras_lowrank.generation.export_generator."
    )


def load_tokenizer(path, vocabulary_size):
    """A `tokenizers.Tokenizer` from `tokenizer.json`, checked against the model.

    Raises:
        ValueError: the file is not a tokenizer, or its vocabulary does not
            fit the model's: an id at or past `vocabulary_size`, or fewer
            ids than the model's by `VOCABULARY_PADDING` or more.
    """
    try:
        from tokenizers import Tokenizer
    except ImportError as error:
        raise ImportError(
            "tokenizers is required to read tokenizer.json: "
            "pip install 'tokenizers==0.23.3'"
        ) from error
    try:
        tokenizer = Tokenizer.from_file(os.fspath(path))
    except Exception as error:  # tokenizers raises a bare Exception
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ValueError(
            f"{path} is not a readable tokenizer.json ({reason})."
        ) from None
    check_tokenizer(tokenizer, vocabulary_size, path)
    return tokenizer


def check_tokenizer(tokenizer, vocabulary_size, source="the tokenizer"):
    """Raises ValueError unless `tokenizer`'s ids fit a model's vocabulary."""
    ids = tokenizer.get_vocab(with_added_tokens=True).values()
    size = max(ids) + 1 if ids else 0
    if size > vocabulary_size or vocabulary_size - size >= VOCABULARY_PADDING:
        raise ValueError(
            f"{source} does not match the model: its ids go up to {size - 1} "
            f"({size} tokens) but the model has a vocabulary of "
            f"{vocabulary_size} (allowed: "
            f"{max(1, vocabulary_size - VOCABULARY_PADDING + 1)} to "
            f"{vocabulary_size} tokens)."
        )


def _version(distribution):
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"
