"""The files a trainable LiteRT artifact carries after its flatbuffer.

A trainable artifact is a `.tflite` flatbuffer followed by a zip archive, as
MediaPipe stores a model's associated files: LiteRT reads the flatbuffer and
ignores what follows, and `zipfile` finds the archive from its end. It holds

- `on_device_training.json` (`METADATA_FILE`): the task, the fixed input
  shapes, the optimizer, each trained factor's adapter-file key, signature
  name and shape, the adapter file's own metadata (so a runner writes a file
  `klr.load_adapters` reads), the label names, and the tokenizer's kind;
- the tokenizer: `vocab.txt` (WordPiece, one token per line in id order) or
  `tokenizer.json` (a Hugging Face tokenizer).

No TensorFlow or Keras here: the TF-free runner reads artifacts with it.
"""

import io
import json
import zipfile

FORMAT = "keras_lowrank.on_device_training/1"
METADATA_FILE = "on_device_training.json"
VOCABULARY_FILE = "vocab.txt"
TOKENIZER_FILE = "tokenizer.json"


def append_files(flatbuffer, metadata, files=None) -> bytes:
    """`flatbuffer` followed by a zip of the metadata JSON and `files`.

    Args:
        flatbuffer: bytes of the `.tflite` model.
        metadata: dict, written as `METADATA_FILE` with `format` set.
        files: optional `{name: bytes}`.
    """
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr(METADATA_FILE, json.dumps({"format": FORMAT, **metadata}, indent=1))
        for name, content in (files or {}).items():
            archive.writestr(name, content)
    return bytes(flatbuffer) + buffer.getvalue()


def read_metadata(path) -> dict:
    """The artifact's `on_device_training.json`.

    Raises:
        ValueError: the file carries no such metadata (not a trainable
            artifact), naming the file.
    """
    metadata = json.loads(read_file(path, METADATA_FILE))
    if metadata.get("format") != FORMAT:
        raise ValueError(
            f"'{path}' is a trainable-artifact format {metadata.get('format')!r}; "
            f"this version reads {FORMAT!r}.")
    return metadata


def read_file(path, name) -> bytes:
    """The associated file `name` of the artifact at `path`."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.read(name)
    except (zipfile.BadZipFile, KeyError):
        raise ValueError(
            f"'{path}' carries no '{name}': it is not a trainable artifact. "
            "Write one with klr.export(model, path, 'tflite', "
            "on_device_training=klr.OnDeviceTraining(...)).") from None
