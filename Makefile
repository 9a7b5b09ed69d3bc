# Every entry point of the project. `make help` lists them.
# The virtual environment lives in .venv; PY points at its python.
VENV ?= .venv
PY   ?= $(VENV)/bin/python
# CPU threads for tests and CPU runs (2 on the reference machine).
THREADS ?= 2
# Test suites pin torch to one thread where a busy neighbour would slow two threads ten-fold.

.PHONY: help install test tiny sft-student opd plot losses-demo bench-losses bench-rollout clean

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

tiny: install  ## build (or reuse) tiny/teacher and tiny/student and print their table; FORCE=1 retrains
	OMP_NUM_THREADS=$(THREADS) $(PY) train_sft.py --build-tiny --threads $(THREADS) $(if $(FORCE),--force)

sft-student: install  ## Fix 3: SFT of tiny/student on tiny/teacher's graded, non-repetitive traces; before/after
	rm -rf runs/sft-student
	OMP_NUM_THREADS=$(THREADS) $(PY) train_sft.py --preset sft-student --threads $(THREADS)

# make opd: the tiny world (shipped checkpoints, CPU, offline). The paper's setting on a GPU:
#   make opd MODEL=Qwen/Qwen3-1.7B TEACHER=Qwen/Qwen3-8B DATA=dapo
RUN ?= runs/opd-$(shell date +%Y%m%d-%H%M%S)
OPD_ARGS ?=
opd: install  ## on-policy distillation, before/after table (tiny world by default; MODEL= TEACHER= DATA= for the paper's)
	OMP_NUM_THREADS=$(THREADS) $(PY) train_opd.py --out $(RUN) --threads $(THREADS) \
	  $(if $(MODEL),--preset paper --student $(MODEL)) $(if $(TEACHER),--teacher $(TEACHER)) \
	  $(if $(DATA),--data $(DATA)) $(OPD_ARGS)

plot: install  ## curves of a run into RUN/curves.png: make plot RUN=runs/opd-...
	$(PY) plot.py $(RUN)

losses-demo: install  ## print the Mechanism 2 demonstration of losses.py
	$(PY) losses.py

bench-losses: install  ## chunked vs materialised losses: peak memory and time at V=151,936 (CPU, ~10 min)
	OMP_NUM_THREADS=$(THREADS) $(PY) bench_losses.py --threads $(THREADS)

bench-rollout: install  ## rollout.generate vs transformers generate, tokens/s at batch 1-64 (CPU, ~5 min)
	$(PY) bench_rollout.py --threads 1

clean:  ## remove caches (keeps .venv)
	rm -rf __pycache__ .pytest_cache
