"""MediaPipe Tasks' text classifier: writing its metadata, running it.

Everything that touches `mediapipe` for `metadata="text_classifier"` is
here; the packaging workaround it needs is `keras_lowrank._compat.mediapipe`.

- `populate_metadata` embeds the tokenizer (a WordPiece vocabulary or a
  SentencePiece model) and the label names into a `.tflite` flatbuffer with
  mediapipe's own writer (`text_classifier.MetadataWriter
  .create_for_bert_model`).
- `MediaPipeClassifier` runs such a file in `TextClassifier`, the C++ task
  the Android, iOS and Web SDKs run: raw strings in, one score per label out.
- `mediapipe_token_ids` shows the token ids MediaPipe's tokenizer gives: it
  runs a probe model whose "scores" are its `ids` input.
- `normalize_text` is what an app does to a string before `classify` so
  that MediaPipe sees what keras-hub's tokenizer sees (NFKC and case
  folding, which MediaPipe's C++ tokenizer leaves out).
"""

import dataclasses
import gc
import os
import tempfile
import unicodedata

import numpy as np

from keras_lowrank._compat import mediapipe as mediapipe_compat

# Metadata names MediaPipe's BERT preprocessor looks the inputs up by.
IDS, MASK, SEGMENT_IDS = "ids", "mask", "segment_ids"
# The associated files inside the artifact.
VOCABULARY_FILE = "vocab.txt"
SENTENCEPIECE_FILE = "sp.model"
LABELS_FILE = "labels.txt"


@dataclasses.dataclass(frozen=True)
class TokenizerFiles:
    """The tokenizer as MediaPipe's metadata stores it.

    Args:
        kind: str. `"wordpiece"` or `"sentencepiece"`.
        vocabulary: tuple of str. WordPiece tokens in id order.
        sentencepiece_proto: bytes. The SentencePiece model, for
            `"sentencepiece"`.
    """

    kind: str
    vocabulary: tuple = ()
    sentencepiece_proto: bytes = b""

    def write(self, folder):
        """Writes the file(s) into `folder`; returns the mediapipe tokenizer."""
        writer = _metadata_writer_module()
        if self.kind == "wordpiece":
            path = os.path.join(folder, VOCABULARY_FILE)
            with open(path, "w", encoding="utf-8", newline="\n") as file:
                file.write("\n".join(self.vocabulary))
            return writer.BertTokenizer(vocab_file_path=path)
        path = os.path.join(folder, SENTENCEPIECE_FILE)
        with open(path, "wb") as file:
            file.write(self.sentencepiece_proto)
        return writer.SentencePieceTokenizer(sentence_piece_model_path=path)


def normalize_text(text):
    """NFKC with case folding, as keras-hub's uncased WordPiece applies it.

    keras-hub folds case and compatibility characters (`tf_text.
    case_fold_utf8`: NFKC_Casefold) before WordPiece; MediaPipe only
    lowercases ASCII. On the MR test split that differs for 1 sentence in
    800 (an ellipsis character, NFKC '...'); on text with ligatures,
    full-width letters, fractions or non-ASCII capitals it differs more.
    Apply this to a string before MediaPipe's `classify` to get keras-hub's
    exact token ids (`docs/export.md` has the Kotlin and Swift lines).
    """
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())


def populate_metadata(flatbuffer, tokenizer, labels, input_names) -> bytes:
    """The `.tflite` flatbuffer with text-classifier metadata added.

    Args:
        flatbuffer: bytes of a model with three int32 inputs `[1, length]`
            and one float32 output `[1, len(labels)]`.
        tokenizer: `TokenizerFiles`.
        labels: label names, one per output class, in class order.
        input_names: `(ids, mask, segment_ids)` tensor names in the
            flatbuffer, e.g. `"serving_default_token_ids:0"`.

    Returns:
        The flatbuffer with the metadata and its associated files.
    """
    metadata_writer = _metadata_writer_module()
    writer_class = mediapipe_compat.text_classifier_writer()
    ids_name, mask_name, segment_name = input_names
    with tempfile.TemporaryDirectory(prefix="klr_metadata_") as folder:
        writer = writer_class.create_for_bert_model(
            bytearray(flatbuffer),
            tokenizer.write(folder),
            metadata_writer.Labels().add(list(labels)),
            ids_name=ids_name,
            mask_name=mask_name,
            segment_name=segment_name,
        )
        try:
            model, _ = writer.populate()
        finally:
            # The writer sits in a reference cycle; collected only at exit,
            # its destructor fails noisily there. Collect it now.
            del writer
            gc.collect()
    return bytes(model)


def read_labels(path):
    """The label names stored in an artifact's metadata, in class order."""
    displayer = mediapipe_compat.metadata_module().MetadataDisplayer
    buffer = displayer.with_model_file(os.fspath(path)).get_associated_file_buffer(
        LABELS_FILE
    )
    return tuple(buffer.decode("utf-8").split("\n"))


class MediaPipeClassifier:
    """A `.tflite` with text-classifier metadata, run in `TextClassifier`.

    Close it (`close()`, or use it as a context manager): mediapipe's
    destructor raises noise at interpreter exit otherwise.

    Args:
        path: the `.tflite` file.

    Example:
    ```python
    with MediaPipeClassifier("classifier.tflite") as classifier:
        scores = classifier(["a gripping, well-acted film"])  # (1, classes)
    ```
    """

    def __init__(self, path):
        module = mediapipe_compat.text_classifier_module()
        from mediapipe.tasks.python.core.base_options import BaseOptions

        self.runtime = f"mediapipe {_version('mediapipe')} TextClassifier"
        self._classifier = module.TextClassifier.create_from_options(
            module.TextClassifierOptions(
                base_options=BaseOptions(model_asset_path=os.fspath(path))
            )
        )

    def classify(self, text):
        """`{index: (label, score)}` for every class, for one string."""
        result = self._classifier.classify(text)
        (head,) = result.classifications
        return {c.index: (c.category_name, float(c.score)) for c in head.categories}

    def __call__(self, texts):
        """Scores `(len(texts), classes)`, columns in class order."""
        rows = []
        for text in texts:
            categories = self.classify(text)
            rows.append([categories[i][1] for i in range(len(categories))])
        return np.asarray(rows, dtype="float32")

    def close(self):
        if self._classifier is not None:
            self._classifier.close()
            self._classifier = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def mediapipe_token_ids(tokenizer, texts, sequence_length):
    """The `ids` MediaPipe's BERT preprocessor feeds a model, per text.

    Builds a probe `.tflite` with three int32 `[1, sequence_length]` inputs
    whose output is its `ids` input as float32, with `tokenizer` in its
    metadata, and classifies each text with it: the scores, by class index,
    are the ids. Padding positions are 0.

    Args:
        tokenizer: `TokenizerFiles`.
        texts: strings.
        sequence_length: the fixed input length (truncation included).

    Returns:
        int32 array `(len(texts), sequence_length)`.
    """
    from keras_lowrank.utils.optional import tensorflow as tf

    spec = tf.TensorSpec((1, sequence_length), tf.int32)

    @tf.function(input_signature=[spec, spec, spec], autograph=False)
    def probe(ids, mask, segment):
        del mask, segment  # inputs MediaPipe fills, unused here
        return tf.cast(ids, tf.float32)

    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [probe.get_concrete_function()], probe
    )
    flatbuffer = converter.convert()
    # Concrete functions keep their argument names as tensor names.
    names = ("ids", "mask", "segment")
    labels = [str(i) for i in range(sequence_length)]
    model = populate_metadata(flatbuffer, tokenizer, labels, names)
    with tempfile.TemporaryDirectory(prefix="klr_probe_") as folder:
        path = os.path.join(folder, "probe.tflite")
        with open(path, "wb") as file:
            file.write(model)
        with MediaPipeClassifier(path) as classifier:
            return np.rint(classifier(texts)).astype("int32")


def _metadata_writer_module():
    mediapipe_compat.install()
    from mediapipe.tasks.python.metadata.metadata_writers import metadata_writer

    return metadata_writer


def _version(distribution):
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"
