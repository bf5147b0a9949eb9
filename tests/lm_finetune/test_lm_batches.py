"""Loss masking: prompt and padding positions weigh 0, completion tokens 1,
exactly; truncation and length-bucketed batches."""

import numpy as np
import pytest

from keras_lowrank.lm_finetune import ChatFormat
from keras_lowrank.lm_finetune import LMExample
from keras_lowrank.lm_finetune import lm_batches


@pytest.fixture(scope="module")
def chat(tiny_folder):
    return ChatFormat.from_folder(tiny_folder, 263)


def test_chat_template_and_eos(chat):
    example = LMExample((("user", "hello"),), "yes")
    assert chat.prompt_text(example.messages) == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, "
        "trained by Hugging Face<|im_end|>\n<|im_start|>user\nhello<|im_end|>\n"
        "<|im_start|>assistant\n")
    prompt, completion = chat.encode(example)
    assert prompt[0] == 1  # <|im_start|>
    assert completion[-1] == 2 and chat.stop_token_ids == (2,)  # <|im_end|>
    assert chat.decode(completion) == "yes"


def test_prompt_and_padding_get_zero_weight(chat):
    examples = [LMExample((("user", "hi"),), "yes"),
                LMExample((("user", "a longer prompt"),), "no")]
    split = lm_batches.encode_split(chat, examples, 256)
    for row, example in enumerate(examples):
        prompt, completion = chat.encode(example)
        ids = prompt + completion
        n = len(ids) - 1
        expected = np.zeros(split.token_ids.shape[1], np.float32)
        # Position j predicts token j + 1: weight 1 from the last prompt
        # token (which predicts the first completion token) on.
        expected[len(prompt) - 1:n] = 1.0
        np.testing.assert_array_equal(split.weights[row], expected)
        np.testing.assert_array_equal(split.token_ids[row, :n], ids[:-1])
        np.testing.assert_array_equal(split.targets[row, :n], ids[1:])
        assert split.padding_mask[row].sum() == n
        assert split.weights[row].sum() == len(completion)
    assert split.prompts[0] == chat.encode(examples[0])[0]


def test_plain_text_weighs_every_token(chat):
    split = lm_batches.encode_split(chat, [LMExample((), "hello hello")], 256)
    ids = chat.encode_text("hello hello")
    np.testing.assert_array_equal(split.weights[0], np.ones(len(ids) - 1))
    assert split.prompts == [[]]


def test_truncation_and_dropping(chat):
    long = LMExample((("user", "x" * 200),), "yes")
    short = LMExample((("user", "hi"),), "yes")
    prompt_length = len(chat.encode(short)[0])
    # Room for the prompt and two completion tokens: the short example
    # keeps two of its four ("y", "e", "s", eos), the long one none.
    split = lm_batches.encode_split(chat, [short, long], prompt_length + 1)
    assert len(chat.encode(short)[1]) == 4
    assert (len(split), split.truncated, split.dropped) == (1, 2, 1)
    assert split.token_ids.shape == (1, prompt_length + 1)
    assert split.weights[0].tolist() == [0.0] * (prompt_length - 1) + [1.0, 1.0]


def test_batches_are_cut_to_their_longest_row(chat):
    examples = [LMExample((("user", "w" * n),), "yes") for n in (1, 2, 40, 41)]
    split = lm_batches.encode_split(chat, examples, 256)
    batches = list(lm_batches.evaluation_batches(split, 2))
    assert [sorted(rows.tolist()) for rows, _ in batches] == [[0, 1], [2, 3]]
    for rows, (inputs, targets, weights) in batches:
        longest = split.lengths[rows].max()
        assert inputs["token_ids"].shape[1] == min(
            -(-longest // 8) * 8, split.token_ids.shape[1])
        assert weights.sum() == split.weights[rows].sum()
    x, y, w = next(iter(lm_batches.training_dataset(split, 2, seed=0)))
    assert x["token_ids"].shape[0] == 2 and w.dtype.name == "float32"
