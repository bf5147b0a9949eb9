"""A tiny keras-hub BERT classifier that takes raw text, with its own vocabulary.

Fast stand-ins for the MiniLM classifier in the MediaPipe and quantization
tests: an uncased WordPiece vocabulary of 60 tokens (whole words and `##`
pieces), 2 layers of width 32, sequence length 16, trained for a few
epochs on toy sentences so that its scores differ from text to text.
"""

import keras
import keras_hub
import numpy as np

SEQUENCE_LENGTH = 16
WORDS = [
    "the", "a", "movie", "film", "plot", "was", "is", "great", "good",
    "awful", "bad", "boring", "fun", "not", "very", "acting", "story",
    "and", "but", "it", "of", "loved", "hated", "this", "cast", "dull",
    "brilliant", "mess", "ending", "script", "caf", "é", "night",
]
PIECES = ["##s", "##ly", "##ing", "##ed", "##é", "##e", "##er"]
PUNCTUATION = [".", ",", "!", "?", "'", "-"]
VOCABULARY = (
    ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS + PIECES + PUNCTUATION
)
POSITIVE = ["great", "good", "fun", "loved", "brilliant"]
NEGATIVE = ["awful", "bad", "boring", "hated", "dull", "mess"]
LABELS = ("negative", "positive")
TEXTS = [
    "The movie was great!",
    "a very boring film, and the plot was dull.",
    "It is not good.",
    "Loved the acting, hated the ending",
    "The Cast Is Brilliant",
    "this script is a mess . . .",
    "fun",
    "a film of the night",
    "THE STORY WAS AWFUL",
    "unknownword great-ish movie?",
    "the acting and the story and the plot and the cast and the script were "
    "great but the ending was awful and boring",
    "café night",
]


def toy_data(count=256, seed=0):
    """`(texts, labels)`: sentences with one sentiment word each."""
    rng = np.random.default_rng(seed)
    fillers = ["the", "movie", "film", "plot", "was", "is", "acting", "story",
               "cast", "script", "ending", "and", "it", "very"]
    texts, labels = [], []
    for _ in range(count):
        label = int(rng.integers(0, 2))
        word = rng.choice(POSITIVE if label else NEGATIVE)
        words = list(rng.choice(fillers, size=int(rng.integers(2, 10))))
        words.insert(int(rng.integers(0, len(words) + 1)), word)
        texts.append(" ".join(words))
        labels.append(label)
    return texts, np.asarray(labels)


def text_classifier(lowercase=True, train=True, num_classes=2, seed=3):
    """The tiny classifier with its preprocessor, trained on `toy_data`."""
    keras.utils.set_random_seed(seed)
    tokenizer = keras_hub.models.BertTokenizer(
        vocabulary=VOCABULARY, lowercase=lowercase
    )
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(
        tokenizer, sequence_length=SEQUENCE_LENGTH
    )
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=len(VOCABULARY), num_layers=2, num_heads=2,
        hidden_dim=32, intermediate_dim=64, max_sequence_length=SEQUENCE_LENGTH,
    )
    model = keras_hub.models.BertTextClassifier(
        backbone, num_classes=num_classes, preprocessor=preprocessor, dropout=0.0
    )
    if train:
        # Token ids in, not strings: no tf.data preprocessing per epoch.
        texts, labels = toy_data(160)
        inputs = {k: np.asarray(v) for k, v in preprocessor(texts).items()}
        model.preprocessor = None
        model.compile(
            optimizer=keras.optimizers.Adam(5e-3),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            # Tracing a train step takes longer than 30 eager steps.
            run_eagerly=True,
        )
        model.fit(inputs, labels % num_classes, epochs=6, batch_size=32, verbose=0)
        model.preprocessor = preprocessor
    return model


def albert_classifier(case_folding=True):
    """A tiny ALBERT classifier with a SentencePiece model trained here.

    `case_folding`: the model normalizes with `nmt_nfkc_cf` (uncased, as
    MediaPipe's lowercasing needs), else `nmt_nfkc` (cased).
    """
    import io

    import sentencepiece

    texts, _ = toy_data(200)
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(texts + TEXTS), model_writer=model,
        vocab_size=47, model_type="WORD", pad_id=0, unk_id=1, bos_id=-1,
        eos_id=-1, pad_piece="<pad>", unk_piece="<unk>",
        user_defined_symbols=["[CLS]", "[SEP]", "[MASK]"],
        normalization_rule_name="nmt_nfkc_cf" if case_folding else "nmt_nfkc",
        minloglevel=2,
    )
    tokenizer = keras_hub.models.AlbertTokenizer(proto=model.getvalue())
    keras.utils.set_random_seed(5)
    backbone = keras_hub.models.AlbertBackbone(
        vocabulary_size=tokenizer.vocabulary_size(), num_layers=2, num_heads=2,
        num_groups=1, num_inner_repetitions=1, embedding_dim=16, hidden_dim=32,
        intermediate_dim=64, max_sequence_length=SEQUENCE_LENGTH,
    )
    preprocessor = keras_hub.models.AlbertTextClassifierPreprocessor(
        tokenizer, sequence_length=SEQUENCE_LENGTH
    )
    return keras_hub.models.AlbertTextClassifier(
        backbone, num_classes=2, preprocessor=preprocessor
    )
