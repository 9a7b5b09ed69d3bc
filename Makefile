# Every entry point of the project. `make help` lists them.
# The virtual environment lives in .venv; PY points at its python.
VENV ?= .venv
PY   ?= $(VENV)/bin/python
# CPU threads for tests and CPU runs (2 on the reference machine).
THREADS ?= 2
# Test suites pin torch to one thread where a busy neighbour would slow two threads ten-fold.

.PHONY: help install install-trl install-lint lint format test trl-example tiny sft-student opd sft-opd collapse opsd opsd-table grpo recipe report report-quick plot losses-demo bench-losses bench-rollout bench-step bench-cpu clean

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

install-trl: $(VENV)/.installed-trl  ## also install TRL (requirements-trl.txt), for examples/trl_distillation.py and its test

$(VENV)/.installed-trl: $(VENV)/.installed requirements-trl.txt
	$(PY) -m pip install -q -r requirements-trl.txt
	touch $@

install-lint: $(VENV)/.installed-lint  ## also install ruff (requirements-dev.txt), for make lint and make format

$(VENV)/.installed-lint: $(VENV)/.installed requirements-dev.txt
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

lint: install-lint  ## ruff: lint and formatting check (ruff.toml; CI runs it)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install-lint  ## ruff: sort imports and format every file in place
	$(VENV)/bin/ruff check --select I --fix .
	$(VENV)/bin/ruff format .

test: install install-trl  ## run every test suite (CPU, offline, a few minutes on 2 cores)
	OMP_NUM_THREADS=$(THREADS) $(PY) -m pytest -q

trl-example: install-trl  ## losses.py inside TRL's DistillationTrainer, tiny world: held-out reverse KL before/after (CPU)
	$(PY) examples/trl_distillation.py

# WORLD=2: the second tiny world (docs/tiny_world2.md: tiny2/, two notations, the conciseness rule and
# the constitution) for make tiny and opd, whose default is the first (tiny/); make report and
# report-quick run on the second by default, WORLD=1 on the first.
WORLD ?=
tiny: install  ## build (or reuse) tiny/teacher and tiny/student and print their table; FORCE=1 retrains; WORLD=2: tiny2/
	OMP_NUM_THREADS=$(THREADS) $(PY) -m tiny_world --world $(or $(WORLD),1) --threads $(THREADS) $(if $(FORCE),--force)

sft-student: install  ## Fix 3: SFT of tiny/student on tiny/teacher's graded, non-repetitive traces; before/after
	rm -rf runs/sft-student
	OMP_NUM_THREADS=$(THREADS) $(PY) train_sft.py --preset sft-student --out runs/sft-student --threads $(THREADS)

SEEDS ?= 0 1
# make opd: the tiny world (shipped checkpoints, CPU, offline). The paper's setting on a GPU:
#   make opd MODEL=Qwen/Qwen3-1.7B TEACHER=Qwen/Qwen3-8B DATA=dapo
RUN ?= runs/opd-$(shell date +%Y%m%d-%H%M%S)
OPD_ARGS ?=
opd: install  ## on-policy distillation, before/after table (tiny world by default; MODEL= TEACHER= DATA= for the paper's)
	OMP_NUM_THREADS=$(THREADS) $(PY) train_opd.py --out $(RUN) --threads $(THREADS) $(if $(filter 2,$(WORLD)),--preset tiny2) \
	  $(if $(MODEL),--preset paper --student $(MODEL)) $(if $(TEACHER),--teacher $(TEACHER)) \
	  $(if $(DATA),--data $(DATA)) $(OPD_ARGS)

# make sft-opd: Fix 3 end to end. OPD from the SFT-stabilised student (make sft-student) against OPD
# from the raw student, same steps, seed and data; finished runs are reused.
SFT_OPD_STEPS ?= 300
sft-opd: install  ## Fix 3: OPD from the SFT-stabilised student vs from the raw student, one table
	test -f runs/sft-student/final/config.json || $(MAKE) sft-student
	for s in raw sft; do d=runs/sft-opd/$$s; test -f $$d/summary.json && continue; rm -rf $$d; \
	  OMP_NUM_THREADS=$(THREADS) $(PY) train_opd.py --steps $(SFT_OPD_STEPS) --out $$d --threads $(THREADS) \
	    $$(test $$s = sft && echo --student runs/sft-student/final) || exit 1; done
	$(PY) -m experiments.plot runs/sft-opd/raw runs/sft-opd/sft --out runs/sft-opd/curves.png --table

# make collapse: Mechanism 2 in the tiny world. Each loss x K x seed is one OPD run at lr 2e-4
# (fast enough for the bias to act within 150 steps); curves in one PNG and one table.
COLLAPSE_LOSSES ?= topk_plain topk_sg topk_renorm_intersect_sg
COLLAPSE_KS ?= 1 5 20
COLLAPSE_ARGS ?= --steps 150 --batch-size 32 --micro-batch 32 --lr 2e-4 --eval-every 50 --ckpt-every 0
collapse: install  ## Mechanism 2: {plain, sg, renorm} x K in {1,5,20} x SEEDS, curves + table (runs/collapse/)
	for l in $(COLLAPSE_LOSSES); do for k in $(COLLAPSE_KS); do for s in $(SEEDS); do \
	  d=runs/collapse/$$l-k$$k-s$$s; test -f $$d/summary.json && continue; rm -rf $$d; \
	  OMP_NUM_THREADS=$(THREADS) $(PY) train_opd.py --loss $$l --k $$k --seed $$s $(COLLAPSE_ARGS) \
	    --out $$d --threads $(THREADS) || exit 1; done; done; done
	$(PY) -m experiments.plot $(foreach l,$(COLLAPSE_LOSSES),$(foreach k,$(COLLAPSE_KS),$(foreach s,$(SEEDS),runs/collapse/$(l)-k$(k)-s$(s)))) \
	  --out runs/collapse/collapse.png --title "Mechanism 2 in the tiny world: Top-K losses at lr 2e-4" --table

# make opsd: self-distillation in the tiny world. PRESET=tiny-rule (shared rule: works, the default),
# tiny-answer / tiny-full (per-instance PI: fails), tiny-none (control); the paper's math setting:
#   make opsd PRESET=paper MODEL=Qwen/Qwen3-1.7B
PRESET ?= tiny-rule
OPSD_ARGS ?=
opsd: install  ## on-policy self-distillation (PRESET=tiny-rule|tiny-answer|tiny-full|tiny-none|paper), before/after + Mechanism 3
	OMP_NUM_THREADS=$(THREADS) $(PY) train_opsd.py --preset $(PRESET) --out $(RUN) --threads $(THREADS) \
	  $(if $(MODEL),--student $(MODEL)) $(OPSD_ARGS)

opsd-table: install  ## the four tiny-world PI settings x SEEDS into runs/opsd/, then one table (reuses finished runs)
	for p in tiny-rule tiny-answer tiny-full tiny-none; do for s in $(SEEDS); do \
	  d=runs/opsd/$$p-s$$s; test -f $$d/summary.json && continue; rm -rf $$d; \
	  OMP_NUM_THREADS=$(THREADS) $(PY) train_opsd.py --preset $$p --seed $$s --out $$d --threads $(THREADS) || exit 1; \
	done; done
	$(PY) train_opsd.py --table $(foreach p,tiny-rule tiny-answer tiny-full tiny-none,$(foreach s,$(SEEDS),runs/opsd/$(p)-s$(s)))

# make grpo: Fix 2's RLVR-adapted teacher. GRPO on a copy of tiny/student with the grader's reward
# (train_grpo.py --preset tiny); the paper's setting on a GPU: make grpo MODEL=Qwen/Qwen3-1.7B
GRPO_ARGS ?=
grpo: install  ## GRPO with the grader's reward: tiny/student lifted into runs/grpo (MODEL= for the paper's preset)
	OMP_NUM_THREADS=$(THREADS) $(PY) train_grpo.py --out $(if $(MODEL),$(RUN),runs/grpo) --threads $(THREADS) \
	  $(if $(MODEL),--preset paper --student $(MODEL)) $(GRPO_ARGS)

# make recipe: the paper's recipe end to end in the tiny world. SFT student (make sft-student) ->
# RLVR teacher (make grpo) -> OPD with an unbiased Top-K loss, against OPD from the raw student with
# the off-the-shelf teacher and plain Top-K; finished runs are reused.
recipe: install  ## SFT -> RLVR teacher -> unbiased Top-K OPD vs raw student + tiny/teacher + plain Top-K
	test -f runs/sft-student/final/config.json || $(MAKE) sft-student
	test -f runs/grpo/summary.json || $(MAKE) grpo
	test -f runs/recipe/recipe/summary.json || { rm -rf runs/recipe/recipe; OMP_NUM_THREADS=$(THREADS) $(PY) train_opd.py \
	  --student runs/sft-student/final --teacher runs/grpo/ckpt --loss topk_tail --out runs/recipe/recipe --threads $(THREADS); }
	test -f runs/recipe/no-fix/summary.json || { rm -rf runs/recipe/no-fix; OMP_NUM_THREADS=$(THREADS) $(PY) train_opd.py \
	  --loss topk_plain --out runs/recipe/no-fix --threads $(THREADS); }
	$(PY) -m experiments.plot runs/recipe/no-fix runs/recipe/recipe --out runs/recipe/curves.png --table

# make report: every mechanism and fix in tiny world 2, 3 seeds, runs in runs/report2/ (reused when
# finished, resumed when killed), RESULTS.md, results/tiny2/ and the README's headline; WORLD=1: the
# first world (runs/report/, RESULTS_tiny1.md). JOBS runs at a time, one thread each.
JOBS ?= 2
report: install  ## all experiments x 3 seeds -> RESULTS.md (hours on 2 cores; resumable); WORLD=1: RESULTS_tiny1.md
	$(PY) -m experiments.report --world $(or $(WORLD),2) --jobs $(JOBS)

report-quick: install  ## the same with 1 seed and short runs (about 20 min on 2 cores) -> runs/report[2]-quick/RESULTS.md
	$(PY) -m experiments.report --world $(or $(WORLD),2) --quick --jobs $(JOBS)

plot: install  ## curves of a run into RUN/curves.png: make plot RUN=runs/opd-...
	$(PY) -m experiments.plot $(RUN)

losses-demo: install  ## print the Mechanism 2 demonstration of losses.py
	$(PY) losses.py

bench-losses: install  ## chunked vs materialised losses: peak memory and time at V=151,936 (CPU, ~10 min)
	OMP_NUM_THREADS=$(THREADS) $(PY) bench/bench_losses.py --threads $(THREADS)

bench-rollout: install  ## rollout.generate vs transformers generate, tokens/s at batch 1-64 (CPU, ~5 min)
	$(PY) bench/bench_rollout.py --threads 1

bench-step: install  ## seconds per phase of one OPD step (rollout, teacher, student, optimizer), tiny world, CPU
	OMP_NUM_THREADS=$(THREADS) $(PY) bench/bench_step.py --threads $(THREADS)

bench-cpu: install  ## what sets the tiny world's CPU time: product rates, both scoring forwards, float32 vs bf16
	OMP_NUM_THREADS=$(THREADS) $(PY) bench/bench_cpu.py --threads $(THREADS)

clean:  ## remove caches (keeps .venv)
	rm -rf __pycache__ .pytest_cache
