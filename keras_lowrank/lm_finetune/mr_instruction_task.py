"""The MR task for a causal LM: each sentence posed as an instruction whose
answer is its label word, "positive" or "negative".

The splits are those of `keras_lowrank.data.load_mr_polarity` (2,800 /
400 / 800 sentences for a seed), so a classifier run and an LM run with the
same seed see the same test sentences.
"""

import itertools

from keras_lowrank.lm_finetune.lm_examples import LMExample

INSTRUCTION = ("Review: {text}\nIs this movie review positive or negative? "
               "Answer with one word.")
SOURCE = "MR sentence polarity (instruction, answer = label word)"


def mr_instruction_examples(cache_dir=".cache", seed=1337, limits=None) -> dict:
    """`{"train", "validation", "test"}`: lists of `LMExample`.

    Args:
        cache_dir: str. Holds `mr_polarity/polarity.csv` (`make fetch`).
        seed: int. Seed of the split.
        limits: optional `{split: int or None}`: the first examples of a
            split only (None: all). Reading the 4,000 sentences one by one
            took ~3 s of CPU, for a run that may keep a dozen.

    Raises:
        DataError: the data is missing (the message says how to fetch it).
    """
    from keras_lowrank.data import load_mr_polarity

    data = load_mr_polarity(cache_dir=cache_dir, seed=seed)
    splits = {}
    for name in ("train", "validation", "test"):
        dataset = getattr(data, name)
        splits[name] = [
            LMExample(
                (("user", INSTRUCTION.format(text=text.decode("utf-8").strip())),),
                data.label_names[int(label)],
                f"MR {name}:{index + 1}",
            )
            for index, (text, label) in enumerate(itertools.islice(
                dataset.as_numpy_iterator(), (limits or {}).get(name)))
        ]
    return splits
