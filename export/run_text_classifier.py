"""Classify raw text with a MediaPipe text-classifier `.tflite`: no TensorFlow.

Needs only `mediapipe` (`pip install mediapipe==1.2.2`): its `TextClassifier`
is the C++ task the Android, iOS and Web SDKs run, so this prints what the
app will show. The artifact comes from
`klr.export(model, "classifier.tflite", "tflite", metadata="text_classifier")`
and holds the tokenizer and the label names.

Usage:
    python export/run_text_classifier.py classifier.tflite "A moving film."
    python export/run_text_classifier.py classifier.tflite --texts reviews.txt \
        --repeats 20 --json

Texts come as arguments, or one per line from `--texts` (a file, or `-` for
standard input). For each: the top label and every label's score, then the
median time of one classification (tokenizing included).
"""

import argparse
import json
import statistics
import sys
import time


def load_classifier(path):
    try:
        from mediapipe.tasks.python.core.base_options import BaseOptions
        from mediapipe.tasks.python.text import text_classifier
    except ImportError as error:
        raise SystemExit(
            "mediapipe is not installed: pip install 'mediapipe==1.2.2'"
        ) from error
    options = text_classifier.TextClassifierOptions(
        base_options=BaseOptions(model_asset_path=path)
    )
    return text_classifier.TextClassifier.create_from_options(options)


def classify(classifier, text):
    """`[(label, score), ...]` in class order."""
    (head,) = classifier.classify(text).classifications
    ordered = sorted(head.categories, key=lambda c: c.index)
    return [(c.category_name or str(c.index), float(c.score)) for c in ordered]


def read_texts(args):
    texts = list(args.text)
    if args.texts:
        source = sys.stdin if args.texts == "-" else open(args.texts, encoding="utf-8")
        with source:
            texts += [line.rstrip("\n") for line in source if line.strip()]
    if not texts:
        raise SystemExit("Give texts as arguments or with --texts FILE.")
    return texts


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", help="the .tflite with text-classifier metadata")
    parser.add_argument("text", nargs="*", help="texts to classify")
    parser.add_argument("--texts", help="a file with one text per line, or -")
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per text")
    parser.add_argument("--json", action="store_true", help="one JSON line per text")
    args = parser.parse_args(argv)

    texts = read_texts(args)
    classifier = load_classifier(args.model)
    try:
        for text in texts:
            scores = classify(classifier, text)
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                classifier.classify(text)
                times.append((time.perf_counter() - start) * 1000.0)
            latency = statistics.median(times) if times else None
            label = max(scores, key=lambda item: item[1])[0]
            if args.json:
                print(json.dumps({"text": text, "label": label,
                                  "scores": dict(scores), "latency_ms": latency}))
                continue
            described = ", ".join(f"{name} {score:.4f}" for name, score in scores)
            timing = "" if latency is None else f"  ({latency:.2f} ms)"
            print(f"{label}\t{described}{timing}\t{text}")
    finally:
        classifier.close()  # its destructor is noisy at interpreter exit
    return 0


if __name__ == "__main__":
    sys.exit(main())
