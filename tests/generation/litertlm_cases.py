"""What the LiteRT-LM tests share: the engine's length, the prompts of the
tiny word tokenizer (`tiny_lms.write_word_tokenizer`: token `i` is `wi`),
and Keras' greedy tokens to compare the engine's text with."""

from keras_lowrank.generation import greedy_reference

MAX_LENGTH = 32
NEW_TOKENS = 6
# The second prompt (11 words, 12 tokens with the start token) spans two
# prefill chunks of 8.
PROMPTS = ["w5 w9 w3", " ".join(f"w{i}" for i in range(10, 21))]


def word_ids(text):
    """The ids of a text of the word tokenizer: "w5 w9" -> [5, 9]."""
    return [int(word[1:]) for word in text.split()]


def keras_tokens(model, prompt, reference=None):
    """Keras' greedy ids after `[start] + prompt`, cut at the stop token;
    from `reference` (a `GreedyReference` of `model` on MAX_LENGTH
    positions, e.g. a shared one) where given."""
    ids = [1] + word_ids(prompt)
    if reference is None:
        tokens = greedy_reference(model, ids, NEW_TOKENS, max_length=MAX_LENGTH).tokens
    else:
        assert reference.model is model and reference.max_length == MAX_LENGTH
        tokens = reference(ids, NEW_TOKENS).tokens
    return list(tokens[:tokens.index(2)] if 2 in tokens else tokens)
