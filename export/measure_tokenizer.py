"""MediaPipe's tokenizer against keras-hub's, on the MR test split and on
probes for casing, accents, unknown words and truncation.

MediaPipe's `TextClassifier` tokenizes on the phone with its own C++
WordPiece (ASCII lowercasing, punctuation and CJK splitting, `##` pieces),
keras-hub with `tf_text` (Unicode case folding with NFKC, the same split).
This runs both on the same strings with all-MiniLM-L6-v2's vocabulary:
keras-hub through the model's preprocessor, MediaPipe through a probe model
whose output is the `ids` tensor it is fed
(`keras_lowrank.exporters.mediapipe_text.mediapipe_token_ids`), and prints
the share of strings with identical ids, and each difference.

Usage (the MR data in .cache, as `make fetch` leaves it), about a minute:
    KERAS_BACKEND=tensorflow .venv/bin/python export/measure_tokenizer.py \\
        --run runs/demo
"""

import argparse
import json
import os

PROBES = [
    # casing: ASCII, and non-ASCII capitals MediaPipe does not lowercase
    "The Movie WAS Great", "ÉMOUVANT ET DRÔLE", "Ölfilm über Straße",
    # accents kept by both (keras-hub's BERT tokenizer does not strip them)
    "a café in Zürich, naïve and déjà vu",
    # compatibility characters NFKC folds
    "ﬁne ﬁlm … “quotes” ½ Ｆｕｌｌｗｉｄｔｈ",
    # unknown words and symbols
    "qzxv flibbertigibbet 🙂 ★★★★☆", "漢字のテスト",
    # truncation: longer than the sequence length
    " ".join(["wonderful"] * 200),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", default="runs/demo", help="a finetune run folder")
    args = parser.parse_args()
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import numpy as np

    from keras_lowrank.exporters.mediapipe_text import mediapipe_token_ids
    from keras_lowrank.exporters.mediapipe_text import normalize_text
    from keras_lowrank.exporters.text_classifier import text_classifier_spec
    from keras_lowrank.exporters.text_inputs import tokenize
    from keras_lowrank.finetune import training
    from keras_lowrank.finetune.options import FinetuneOptions

    with open(os.path.join(args.run, "report.json"), encoding="utf-8") as file:
        run = json.load(file)
    options = FinetuneOptions(**{
        key: tuple(value) if isinstance(value, list) else value
        for key, value in run["options"].items()
    })
    data = training.load_data(options)
    _, model = training.build_classifier(options, len(run["label_names"]))
    spec = text_classifier_spec(model)
    vocabulary = spec.tokenizer.vocabulary
    test = [t.decode("utf-8") for t, _ in data.test.as_numpy_iterator()]

    for name, texts, prepare in (
        ("MR test split", test, None),
        ("probes", PROBES, None),
        ("MR test split, normalize_text before MediaPipe", test, normalize_text),
        ("probes, normalize_text before MediaPipe", PROBES, normalize_text),
    ):
        ours = tokenize(model, texts)["token_ids"]
        given = [prepare(t) for t in texts] if prepare else texts
        theirs = mediapipe_token_ids(spec.tokenizer, given, spec.sequence_length)
        different = np.flatnonzero(np.any(ours != theirs, axis=1))
        print(f"{name}: {len(texts) - len(different)} of {len(texts)} texts "
              f"({100 * (1 - len(different) / len(texts)):.2f}%) get identical ids")
        for i in different:
            print(f"  {texts[i][:70]!r}")
            print(f"    keras-hub: {_pieces(ours[i], vocabulary)}")
            print(f"    MediaPipe: {_pieces(theirs[i], vocabulary)}")


def _pieces(ids, vocabulary):
    return " ".join(vocabulary[i] for i in ids if i != 0)[:160]


if __name__ == "__main__":
    main()
