# Every entry point of the project. `make help` lists them.
# The virtual environment lives in .venv; PY points at its python.
VENV ?= .venv
PY   ?= $(VENV)/bin/python
# CPU threads for tests and CPU runs (2 on the reference machine).
THREADS ?= 2
# Test suites pin torch to one thread where a busy neighbour would slow two threads ten-fold.

.PHONY: help install test losses-demo bench-losses bench-rollout clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' Makefile | sed 's/:.*## /\t/' | expand -t 16

install: $(VENV)/.installed  ## create .venv and install requirements (CPU torch when no GPU is present)

$(VENV)/.installed: requirements.txt
	test -x $(PY) || python3 -m venv $(VENV)
	# No GPU here: take the CPU build of torch first, so the range in requirements.txt is
	# already satisfied and pip does not pull a multi-GB CUDA build.
	if ! command -v nvidia-smi >/dev/null 2>&1; then $(PY) -m pip install -q "torch==2.13.0"; fi
	$(PY) -m pip install -q -r requirements.txt
	touch $@

test: install  ## run every test suite (CPU, offline, a few minutes on 2 cores)
	OMP_NUM_THREADS=$(THREADS) $(PY) -m pytest -q

losses-demo: install  ## print the Mechanism 2 demonstration of losses.py
	$(PY) losses.py

bench-losses: install  ## chunked vs materialised losses: peak memory and time at V=151,936 (CPU, ~10 min)
	OMP_NUM_THREADS=$(THREADS) $(PY) bench_losses.py --threads $(THREADS)

bench-rollout: install  ## rollout.generate vs transformers generate, tokens/s at batch 1-64 (CPU, ~5 min)
	$(PY) bench_rollout.py --threads 1

clean:  ## remove caches (keeps .venv)
	rm -rf __pycache__ .pytest_cache
