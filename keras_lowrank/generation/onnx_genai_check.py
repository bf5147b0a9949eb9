"""`GenAIGenerator`, `GenAITokenizer`: a GenAI folder run by
`onnxruntime_genai` itself, and the checks of its tokenizer against the
`tokenizers` library.

`GenAIGenerator.greedy` has the interface of `generator_loop.Generator`'s,
so `verify_generation` drives it exactly as the other artifacts: the same
prompt ids go to Keras and to GenAI, and the tokens must be equal.
"""

import json
import time

import numpy as np

from keras_lowrank.generation.generation_verification import GenerationVerificationError
from keras_lowrank.generation.generator_loop import GreedyResult
from keras_lowrank.utils.optional import MissingDependencyError

GENAI_PIP = "onnxruntime-genai==0.18.0"


def import_genai():
    """`onnxruntime_genai`, or an error naming the pip command."""
    try:
        import onnxruntime_genai
    except ImportError as error:
        raise MissingDependencyError(
            "onnxruntime-genai is required to run ONNX Runtime GenAI folders: "
            f"pip install '{GENAI_PIP}'"
        ) from error
    return onnxruntime_genai


class GenAITokenizer:
    """The tokenizer GenAI builds from a folder's tokenizer files.

    It needs only `genai_config.json`, `tokenizer.json` and
    `tokenizer_config.json`, so the tokenizer is checked before the model
    is built.

    Args:
        folder: str. Holds those three files.
    """

    def __init__(self, folder):
        og = import_genai()
        self.folder = folder
        try:
            self.tokenizer = og.Tokenizer(og.Config(folder))
        except RuntimeError as error:
            raise ValueError(
                f"onnxruntime-genai {og.__version__} cannot read the tokenizer "
                f"files in {folder}: {error}. GenAI reads tokenizer.json with its "
                "own code (onnxruntime-extensions): byte-level BPE (GPT-2, "
                "Llama 3, SmolLM2) or SentencePiece-style BPE (Llama 2, "
                "Gemma); a word-level or WordPiece tokenizer cannot be used.") from None

    def encode(self, text) -> list:
        """GenAI's own token ids for `text`."""
        return [int(t) for t in self.tokenizer.encode(text)]

    def decode(self, ids) -> str:
        return self.tokenizer.decode(np.asarray(ids, np.int32))

    def chat_prompt(self, content) -> str:
        """`content` as one user turn in the folder's chat template, with
        the generation prompt."""
        messages = json.dumps([{"role": "user", "content": content}])
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True)


class GenAIGenerator:
    """A GenAI folder loaded in `onnxruntime_genai` (CPU).

    Args:
        folder: str. Holds `genai_config.json`, `model.onnx` and the
            tokenizer files.

    Example:
    ```python
    generator = GenAIGenerator("smollm2-genai")
    ids = GenAITokenizer("smollm2-genai").encode("The capital of France is")
    print(generator.greedy([1] + ids, 16).tokens)
    ```
    """

    def __init__(self, folder):
        og = import_genai()
        self.folder = folder
        try:
            self.model = og.Model(folder)
        except RuntimeError as error:
            raise RuntimeError(
                f"onnxruntime-genai {og.__version__} cannot load {folder}: "
                f"{error}") from None
        self._og = og
        self.runtime = f"onnxruntime-genai {og.__version__} (CPU)"
        self._adapters = None
        self.active_adapter = None

    def load_adapter(self, path, name):
        """Loads the `.onnx_adapter` file `path` as `name` and makes it the
        active one (`use_adapter` switches)."""
        if self._adapters is None:
            self._adapters = self._og.Adapters(self.model)
        try:
            self._adapters.load(str(path), name)
        except RuntimeError as error:
            raise RuntimeError(
                f"onnxruntime-genai {self._og.__version__} cannot load the "
                f"adapter {path}: {error}") from None
        self.active_adapter = name

    def use_adapter(self, name):
        """Generates with the loaded adapter `name`; None: the base model."""
        self.active_adapter = name

    def new_generator(self, max_length):
        """A greedy `og.Generator` of at most `max_length` tokens, with the
        active adapter."""
        params = self._og.GeneratorParams(self.model)
        params.set_search_options(max_length=max_length, do_sample=False, top_k=1)
        generator = self._og.Generator(self.model, params)
        if self.active_adapter is not None:
            generator.set_active_adapter(self._adapters, self.active_adapter)
        return generator

    def greedy(self, prompt_ids, max_new_tokens) -> GreedyResult:
        """GenAI's greedy tokens after `prompt_ids` (batch 1), stopping at
        `max_new_tokens` or a stop token (included)."""
        generator = self.new_generator(len(prompt_ids) + max_new_tokens)
        start = time.perf_counter()
        generator.append_tokens(np.asarray(prompt_ids, np.int32))
        tokens, first = [], None
        while not generator.is_done() and len(tokens) < max_new_tokens:
            generator.generate_next_token()
            tokens.append(int(generator.get_next_tokens()[0]))
            first = first or time.perf_counter()
        end = time.perf_counter()
        stopped = "max_new_tokens" if len(tokens) >= max_new_tokens else "stop_token"
        return GreedyResult(tuple(tokens), stopped, (first or end) - start, end - (first or end))


def genai_prompt_ids(tokenizer, texts, keras_ids, start_token_id):
    """Checks GenAI's tokenizer on each text against Keras' prompt ids.

    Keras' ids are the `tokenizers` library's, after `start_token_id` when
    the model has one. GenAI's must be the same, or the same without the
    start token (which its tokenizer may not add).

    Returns:
        bool. Whether GenAI's tokenizer adds the start token itself; None
        when the model has none.

    Raises:
        GenerationVerificationError: GenAI encodes a text differently.
    """
    added = set()
    for text, expected in zip(texts, keras_ids):
        ids = tokenizer.encode(text)
        if ids == expected:
            added.add(True)
        elif start_token_id is not None and [start_token_id] + ids == expected:
            added.add(False)
        else:
            raise GenerationVerificationError(
                f"GenAI's tokenizer encodes {text!r} as {ids[:12]} "
                f"({len(ids)} ids) but the tokenizers library, with the start "
                f"token {start_token_id}, as {expected[:12]} ({len(expected)} "
                "ids). GenAI reads tokenizer.json with its own code "
                "(onnxruntime-extensions, byte-level BPE or SentencePiece "
                "BPE); a tokenizer of another kind cannot be used there."
            )
    if start_token_id is None:
        return None
    if len(added) > 1:
        raise GenerationVerificationError(
            "GenAI's tokenizer adds the start token "
            f"{start_token_id} to some prompts and not to others."
        )
    return added.pop()


def check_chat_template(tokenizer, text):
    """Raises unless GenAI applies the folder's chat template to `text`."""
    try:
        prompt = tokenizer.chat_prompt(text)
    except RuntimeError as error:
        raise GenerationVerificationError(
            f"GenAI cannot apply the chat template of "
            f"{tokenizer.folder}/tokenizer_config.json: {error}") from None
    if text not in prompt:
        raise GenerationVerificationError(
            f"GenAI's chat template of {tokenizer.folder}/tokenizer_config.json "
            f"drops the message: {text!r} became {prompt!r}.")
    return prompt
