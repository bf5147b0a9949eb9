"""Greedy generation driven entirely from an exported artifact.

Needs only numpy and the artifact's runtime (`ai-edge-litert` for
`.tflite`, `onnxruntime` for `.onnx`), plus `tokenizers` for text: no
TensorFlow, no Keras. `export/generate.py` loads this file by path on
machines that have nothing else, and it loads its siblings the same way
(`generator_loop.py`: the greedy loop; `generator_spec.py`: the metadata;
`runtime_tokenizer.py`: `load_tokenizer`); `export_generator` verifies
artifacts with it. This module holds each format's runner and
`load_generator`, and re-exports the names of its siblings.

Example:
```python
generator = load_generator("lm.tflite")
result = generator.greedy(prompt_ids, max_new_tokens=32)
result.tokens, result.time_to_first_token_s, result.decode_tokens_per_s
```
"""

import importlib.util
import mmap
import os
import sys

import numpy as np


def _sibling(name):
    """`name`.py beside this file, loaded by path as `_klr_<name>`: the
    package, and with it Keras, is never imported that way."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"_klr_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


if __package__:
    from keras_lowrank.generation.generator_loop import Generator
    from keras_lowrank.generation.generator_loop import GreedyResult
    from keras_lowrank.generation.generator_loop import PromptTooLongError
    from keras_lowrank.generation.generator_loop import plan_prefill
    from keras_lowrank.generation.generator_spec import METADATA_KEY
    from keras_lowrank.generation.generator_spec import GeneratorSpec
    from keras_lowrank.generation.runtime_tokenizer import VOCABULARY_PADDING
    from keras_lowrank.generation.runtime_tokenizer import check_tokenizer
    from keras_lowrank.generation.runtime_tokenizer import load_tokenizer
else:  # loaded by path, without the package (and so without Keras)
    _loop = _sibling("generator_loop")
    Generator, GreedyResult = _loop.Generator, _loop.GreedyResult
    PromptTooLongError, plan_prefill = _loop.PromptTooLongError, _loop.plan_prefill
    _spec_module = _sibling("generator_spec")
    METADATA_KEY, GeneratorSpec = _spec_module.METADATA_KEY, _spec_module.GeneratorSpec
    _tokenizer = _sibling("runtime_tokenizer")
    VOCABULARY_PADDING = _tokenizer.VOCABULARY_PADDING
    check_tokenizer, load_tokenizer = _tokenizer.check_tokenizer, _tokenizer.load_tokenizer

__all__ = [
    "GreedyResult", "Generator", "LiteRTGenerator", "ONNXGenerator",
    "PromptTooLongError", "VOCABULARY_PADDING", "check_tokenizer",
    "load_generator", "load_tokenizer", "plan_prefill", "read_tflite_spec",
]


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


def _version(distribution):
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"
