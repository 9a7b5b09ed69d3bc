# Every entry point of the project. `make help` lists them and the variables they read.
# A comment line that starts with `## NAME=` documents a variable for `make help`; next to each
# target, `opts.TARGET` lists the variables it reads, and one given on the command line that the
# target does not read is refused by name (the checks are at the end of this file).
self := $(lastword $(MAKEFILE_LIST))
## VENV=.venv             the virtual environment every target uses
## PY=$(VENV)/bin/python  the python every target runs
## TORCH_VERSION=2.13.0   make install: the torch it installs first (the CPU build when no GPU is present)
## TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu  make install: where that CPU build comes from
# The virtual environment lives in .venv; PY points at its python.
VENV ?= .venv
PY   ?= $(VENV)/bin/python
## THREADS=1              CPU threads of each run, benchmark and test suite (make bench-threads: one thread keeps its pace beside a busy process; a thread per core waits on the shared one)
THREADS ?= 1

.PHONY: help install install-trl install-lint lint format test trl-example tiny sft-student opd readme-opd sft-opd collapse collapse-pilot opsd opsd-table grpo recipe report report-quick plot losses-demo bench-losses bench-rollout bench-step bench-threads bench-cpu clean

help:  ## this page: every target with its time on a 2-core laptop CPU, every variable
	@echo "targets (make TARGET; times measured on 2 CPU cores where given, docs/performance.md):"
	@grep -E '^[a-z-]+:.*## ' $(self) | sed 's/:.*## /\t/' | expand -t 16 | sed 's/^/  /'
	@echo
	@echo "variables (make TARGET NAME=value; the default follows the =):"
	@sed -n 's/^## /  /p' $(self)
	@echo
	@echo "what each target reads besides VENV and PY (any other variable given on the command line is refused):"
	@$(foreach t,$(checked),printf '  %-15s %s\n' '$(t)' '$(or $(opts.$(t)),nothing)';)

install: $(VENV)/.installed  ## create .venv and install requirements (CPU torch when no GPU is present)

# Without nvidia-smi, torch comes first from PyTorch's CPU wheel index, the way PyTorch's install
# page does it (PyPI's Linux wheel is the CUDA build, several GB of nvidia-* wheels with it). A
# five-second probe of that index decides; where it cannot be reached (a machine that sees only PyPI
# or a mirror, such as CI) the same version comes from pip's ordinary index, which on Linux is the
# CUDA build unless pip's configuration offers a CPU wheel. requirements.txt's range is then met.
TORCH_VERSION   ?= 2.13.0
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu

$(VENV)/.installed: requirements.txt
	test -x $(PY) || python3 -m venv $(VENV)
	if ! command -v nvidia-smi >/dev/null 2>&1; then \
	  if $(PY) -c "import urllib.request as u; u.urlopen('$(TORCH_CPU_INDEX)/torch/', timeout=5)" 2>/dev/null \
	    && $(PY) -m pip install -q --index-url $(TORCH_CPU_INDEX) "torch==$(TORCH_VERSION)"; then :; \
	  else echo "no torch==$(TORCH_VERSION) from $(TORCH_CPU_INDEX) (unreachable?): trying pip's ordinary index"; \
	    $(PY) -m pip install -q "torch==$(TORCH_VERSION)" || exit 1; fi; \
	fi
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

opts.lint :=
lint: install-lint  ## ruff: lint and formatting check (ruff.toml; CI runs it); seconds
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

opts.format :=
format: install-lint  ## ruff: sort imports and format every file in place; seconds
	$(VENV)/bin/ruff check --select I --fix .
	$(VENV)/bin/ruff format .

opts.test := THREADS
test: install install-trl  ## every test suite (CPU, offline); about 4 min on 2 cores, plus the install
	OMP_NUM_THREADS=$(THREADS) $(PY) -m pytest -q

opts.trl-example :=
why.trl-example.WORLD := examples/trl_distillation.py loads the first world's models only
why.trl-example.THREADS := it runs on one thread, the fastest for models this small
trl-example: install-trl  ## losses.py inside TRL's DistillationTrainer, tiny world: held-out reverse KL before/after; about 30 s
	$(PY) examples/trl_distillation.py

## WORLD=                 the tiny world: 1 (tiny/, the default) or 2 (tiny2/, docs/tiny_world2.md; the default of report, report-quick and collapse)
WORLD ?=
# w2 is 2 in the second world and empty in the first: the suffix of the second world's folders
# (runs/grpo2 beside runs/grpo), so that the two worlds' runs never mix.
w2 := $(filter 2,$(WORLD))
tiny2_pair := --student tiny2/student --teacher tiny2/teacher

## FORCE=                 1: make tiny retrains both models from scratch and overwrites tiny/ (tiny2/ with WORLD=2)
FORCE ?=
opts.tiny := THREADS WORLD FORCE
tiny: install  ## reuse tiny/teacher and tiny/student and print their table (seconds); FORCE=1 retrains them (about 20 min; WORLD=2: tiny2/, about 25 min)
	OMP_NUM_THREADS=$(THREADS) $(PY) -m tiny_world --world $(or $(WORLD),1) --threads $(THREADS) $(if $(FORCE),--force)

# -----------------------------------------------------------------------------
# Starting over and continuing, the same way in every target that trains. A run folder holds
# summary.json once its run has finished and ckpt/ once it has saved a checkpoint (run_folder.py).
# Nothing is deleted unless FRESH=1 asks for it, and every refusal says what to type instead.
## FRESH=                 1: delete the target's run folder (or its whole tree of runs) first and start over
## RESUME=                1: continue the target's unfinished run from its last checkpoint; finished runs stay as they are
FRESH ?=
RESUME ?=
## RUN=                   the run folder of opd (default runs/opd-DATE), opsd (runs/opsd-DATE), grpo (runs/grpo; WORLD=2 runs/grpo2; MODEL= runs/grpo-DATE) and sft-student (runs/sft-student; WORLD=2 runs/sft-student2); the run make plot draws (default: the newest under runs/)
RUN ?=
now := $(shell date +%Y%m%d-%H%M%S)

empty :=
space := $(empty) $(empty)
# The variables given on this command line (with a value), and this command typed again with the
# ones the target reads, less FRESH and RESUME: what a refusal tells the user to type.
given = $(foreach v,$(user_vars),$(if $(filter command line,$(origin $(v))),$(if $(strip $($(v))),$(v))))
again = $(strip make $@ $(foreach v,$(filter-out FRESH RESUME,$(filter $(opts.$@),$(given))),$(v)=$(if $(findstring $(space),$(strip $($(v)))),'$(strip $($(v)))',$($(v)))))

# Shell snippets for the recipes below.
# $(call refuse,MESSAGE): print `make TARGET: MESSAGE` and stop.
refuse = { echo "make $@: $(1)" >&2; exit 1; }
# $(call remove,FOLDER,WHY): delete FOLDER and say so, unless a live run holds a lock inside it.
remove = if [ -e $(1) ]; then \
	  for l in $$(find $(1) -name .lock); do \
	    if command -v flock >/dev/null && ! flock -n $$l true; then $(call refuse,a live run holds $$l: let it end or stop it first); fi; \
	  done; echo "$(2): deleting $(1)"; rm -rf $(1); fi
# $(call has_ckpt,FOLDER): whether FOLDER holds a checkpoint a --resume continues from: one written to
# its end (checkpoint.py's manifest), or an older version's ckpt/ (folders.resumable).
has_ckpt = { ls $(1)/ckpt*/manifest.json || ls $(1)/ckpt/train_state.pt; } >/dev/null 2>&1
# $(call check_run,FOLDER): the first line of a target that trains one run into FOLDER. FRESH=1
# deletes it; a finished run there is refused (it would be overwritten), and so is an unfinished
# one unless RESUME=1, which the target's command then passes on as --resume.
check_run = d=$(1); \
	$(if $(FRESH),$(call remove,$$d,FRESH=1), \
	if [ -f $$d/summary.json ]; then \
	  $(call refuse,$$d holds a finished run (make plot RUN=$$d draws its curves). To start over in it: $(again) FRESH=1 (deletes it); or choose another folder with RUN=); \
	elif $(call has_ckpt,$$d); then \
	  $(if $(RESUME),:,$(call refuse,$$d holds an unfinished run. To continue it from its last checkpoint: $(again) RESUME=1; to delete it and start over: $(again) FRESH=1)); \
	elif [ -n "$$(ls -A $$d 2>/dev/null)" ]; then \
	  $(call refuse,$$d holds a run that stopped before its first checkpoint: nothing to continue. To delete it and start over: $(again) FRESH=1); \
	$(if $(RESUME),else $(call refuse,RESUME=1: there is no run in $$d to continue. Name the run's folder with RUN=FOLDER; or $(again) starts a new one);) \
	fi)
# $(call each_run,FOLDER,COMMAND,TREE): one run of a target that trains several into TREE (a line
# of its loop). A finished run is reused and a missing one started; an unfinished one is continued
# with RESUME=1 (one that stopped before its first checkpoint is started again) and refused without.
each_run = d=$(1); \
	if [ -f $$d/summary.json ]; then echo "$$d: finished, reused"; \
	elif $(call has_ckpt,$$d); then \
	  $(if $(RESUME),(set -x; $(2) --out $$d --resume) || exit 1, \
	    $(call refuse,$$d holds an unfinished run. To continue it (finished runs are kept): $(again) RESUME=1; to delete $(3) and start every run over: $(again) FRESH=1)); \
	elif [ -n "$$(ls -A $$d 2>/dev/null)" ]; then \
	  $(if $(RESUME),$(call remove,$$d,RESUME=1: it stopped before its first checkpoint); (set -x; $(2) --out $$d) || exit 1, \
	    $(call refuse,$$d holds a run that stopped before its first checkpoint. To start that run again (finished runs are kept): $(again) RESUME=1; to delete $(3) and start every run over: $(again) FRESH=1)); \
	else (set -x; $(2) --out $$d) || exit 1; fi
# $(call sub_make,TARGET,FOLDER): make TARGET first unless FOLDER holds its finished run; passes on
# the variables TARGET reads, RESUME=1 only when FOLDER exists (something to continue), never FRESH.
sub_make = test -f $(2)/summary.json || $(MAKE) -f $(self) $(1) FRESH= RESUME=$$(test -e $(2) && echo '$(RESUME)') \
	$(foreach v,$(filter-out $(opts.$(1)),$(given)),$(v)=) || $(call refuse,it needs make $(1) to finish first (above))

# make sft-student: Fix 3's SFT-stabilised student, in runs/sft-student (WORLD=2: runs/sft-student2,
# tiny2/student on tiny2/teacher's traces, as the report does); make sft-opd and make recipe read it there.
sft_student_out = $(or $(RUN),runs/sft-student$(w2))
# LORA=R: opd, opsd, grpo and sft-student train low-rank adapters of rank R (lora.py) instead of the
# student's full weights, at ten times the preset's learning rate (config.LORA_LR_SCALE; docs/lora.md).
## LORA=                  opd, opsd, grpo, sft-student: train LoRA adapters of this rank, the weights frozen (--lora-rank; docs/lora.md), e.g. make opd LORA=16
LORA ?=
lora_flag = $(if $(LORA),--lora-rank $(LORA))
opts.sft-student := THREADS WORLD RUN FRESH RESUME LORA
sft-student: install  ## Fix 3: SFT of the student on the teacher's graded, non-repetitive traces, before/after -> runs/sft-student; minutes
	@$(call check_run,$(sft_student_out))
	OMP_NUM_THREADS=$(THREADS) $(PY) train_sft.py --preset sft-student $(if $(w2),$(tiny2_pair)) $(lora_flag) \
	  --out $(sft_student_out) --threads $(THREADS) $(if $(RESUME),--resume)

## SEEDS=0 1              the seeds of make opsd-table, one run each (a single run takes --seed in its *_ARGS)
SEEDS ?= 0 1
# make opd: the tiny world (shipped checkpoints, CPU, offline). The paper's setting on a GPU:
#   make opd MODEL=Qwen/Qwen3-1.7B TEACHER=Qwen/Qwen3-8B DATA=dapo
## MODEL=                 the paper's setting on a GPU: the student's hub name (opd and grpo: --preset paper; opsd: --student)
## TEACHER=               make opd's teacher, a hub name or a folder (default: the world's tiny teacher)
## DATA=                  make opd's prompts, a dataset name such as dapo or a .jsonl (default: the tiny world's problems)
## OPD_ARGS=              more train_opd.py flags for make opd, e.g. OPD_ARGS="--steps 50 --seed 1"
MODEL ?=
TEACHER ?=
DATA ?=
OPD_ARGS ?=
opd_out = $(or $(RUN),runs/opd-$(now))
opts.opd := THREADS WORLD RUN FRESH RESUME MODEL TEACHER DATA OPD_ARGS LORA
why.opd.SEEDS := make opd trains one run: OPD_ARGS=--seed N sets its seed
opd: install  ## on-policy distillation, before/after table -> runs/opd-DATE; 2 to 3 min (MODEL= TEACHER= DATA=: the paper's setting, GPU)
	@$(call check_run,$(opd_out))
	OMP_NUM_THREADS=$(THREADS) $(PY) train_opd.py --out $(opd_out) --threads $(THREADS) $(if $(w2),--preset tiny2) \
	  $(if $(MODEL),--preset paper --student $(MODEL)) $(if $(TEACHER),--teacher $(TEACHER)) \
	  $(if $(DATA),--data $(DATA)) $(lora_flag) $(OPD_ARGS) $(if $(RESUME),--resume)

# make readme-opd: the README's quickstart results, make opd of each world (runs/readme-opd and
# runs/readme-opd2) beside its baseline at the same teacher cost, SFT on the teacher's samples
# (runs/readme-opd-kd, runs/readme-opd2-kd); finished runs reused; written into README.md by
# experiments/quickstart.py.
opts.readme-opd := THREADS FRESH RESUME
readme-opd_runs = runs/readme-opd runs/readme-opd2 runs/readme-opd-kd runs/readme-opd2-kd
readme-opd: install  ## make opd in both worlds and SFT on the teacher's samples, then the README's quickstart tables; about 12 min
	@$(if $(FRESH),$(foreach d,$(readme-opd_runs),$(call remove,$(d),FRESH=1);))
	@$(call each_run,runs/readme-opd,OMP_NUM_THREADS=$(THREADS) $(PY) train_opd.py --threads $(THREADS),runs/readme-opd)
	@$(call each_run,runs/readme-opd2,OMP_NUM_THREADS=$(THREADS) $(PY) train_opd.py --preset tiny2 --threads $(THREADS),runs/readme-opd2)
	@$(call each_run,runs/readme-opd-kd,OMP_NUM_THREADS=$(THREADS) $(PY) train_sft.py --preset kd --tokens-of runs/readme-opd --threads $(THREADS),runs/readme-opd-kd)
	@$(call each_run,runs/readme-opd2-kd,OMP_NUM_THREADS=$(THREADS) $(PY) train_sft.py --preset kd $(tiny2_pair) --tokens-of runs/readme-opd2 --threads $(THREADS),runs/readme-opd2-kd)
	OMP_NUM_THREADS=$(THREADS) $(PY) -m experiments.quickstart $(readme-opd_runs)

# make sft-opd: Fix 3 end to end. OPD from the SFT-stabilised student (make sft-student) against OPD
# from the raw student, same steps, seed and data, in runs/sft-opd (WORLD=2: runs/sft-opd2). Finished
# runs are reused; FRESH=1 deletes runs/sft-opd only, not the SFT student (make sft-student FRESH=1).
## SFT_OPD_STEPS=300      the steps of each of make sft-opd's two OPD runs
SFT_OPD_STEPS ?= 300
opts.sft-opd := THREADS WORLD FRESH RESUME SFT_OPD_STEPS
sft-opd: install  ## Fix 3: OPD from the SFT student vs from the raw student, one table -> runs/sft-opd; minutes (make sft-student, then two OPD runs of about 2 min)
	@$(if $(FRESH),$(call remove,runs/sft-opd$(w2),FRESH=1))
	@$(call sub_make,sft-student,runs/sft-student$(w2))
	@for s in raw sft; do st=; if [ $$s = sft ]; then st="--student runs/sft-student$(w2)/final"; fi; \
	  $(call each_run,runs/sft-opd$(w2)/$$s,OMP_NUM_THREADS=$(THREADS) $(PY) train_opd.py $(if $(w2),--preset tiny2) \
	    --steps $(SFT_OPD_STEPS) --threads $(THREADS) $$st,runs/sft-opd$(w2)); \
	done
	$(PY) -m experiments.plot runs/sft-opd$(w2)/raw runs/sft-opd$(w2)/sft --out runs/sft-opd$(w2)/curves.png --table

# make collapse: Mechanism 2 and Fix 1 under docs/collapse.md's protocol, the report's collapse runs
# (python -m experiments.report --only collapse/): plain, stop-gradient, renormalised and tail-bucket
# Top-K at K = 1, 5, 20 at a constant lr 3e-4 over the budget, plain again at 1.5e-4, the
# stop-gradient and tail losses at K = 20 to 4x the budget; 3 seeds, JOBS at a time, in
# runs/report/collapse (WORLD=2: runs/report2/collapse), where make report reads them. Resumable: a
# second call reuses the finished runs and continues the others. Then seed 0's curves and table,
# and the report's Mechanism 2 section rewritten from these runs alone (RESULTS.md and the README's
# headline; WORLD=1: RESULTS_tiny1.md, whose verdicts RESULTS.md shows beside its own: run it first).
opts.collapse := WORLD JOBS
why.collapse.RESUME := make collapse always continues: finished runs are reused and killed ones resumed
why.collapse.THREADS := make collapse runs JOBS runs at a time on one thread each
collapse_root = runs/report$(if $(filter 1,$(WORLD)),,2)
collapse: install  ## Mechanism 2 and Fix 1 by docs/collapse.md's protocol, 3 seeds -> runs/report2/collapse (WORLD=1: runs/report); hours, resumable
	$(PY) -m experiments.report --world $(or $(WORLD),2) --only collapse/ --jobs $(JOBS)
	$(PY) -m experiments.plot $(collapse_root)/collapse/*-s0 --out $(collapse_root)/collapse/collapse.png \
	  --title "Mechanism 2 in tiny world $(or $(WORLD),2): Top-K losses at a constant lr (seed 0)" --table
	$(PY) -m experiments.report --world $(or $(WORLD),2) --section mechanism2

# make collapse-pilot: part 1 of docs/collapse.md, the pilot that chooses the collapse protocol's
# budget and its alarm rule: seed 100 (no report seed), constant lr 3e-4, batch 32, 400 steps; plain
# Top-K at K = 1, 5, 20 and the three other Top-K losses at K = 20, in runs/collapse-pilot (WORLD=2:
# runs/collapse-pilot2). Finished runs are reused.
pilot_runs = topk_plain-k1 topk_plain-k5 topk_plain-k20 topk_sg-k20 topk_renorm_intersect_sg-k20 topk_tail-k20
opts.collapse-pilot := THREADS WORLD FRESH RESUME
collapse-pilot: install  ## the collapse protocol's pilot (docs/collapse.md, part 1): 6 runs of 400 steps -> runs/collapse-pilot; about 30 min per world
	@$(if $(FRESH),$(call remove,runs/collapse-pilot$(w2),FRESH=1))
	@for r in $(pilot_runs); do \
	  $(call each_run,runs/collapse-pilot$(w2)/$$r,OMP_NUM_THREADS=$(THREADS) $(PY) train_opd.py $(if $(w2),--preset tiny2) \
	    --loss $${r%-k*} --k $${r##*-k} --seed 100 --steps 400 --batch-size 32 --micro-batch 32 --lr 3e-4 --min-lr 3e-4 \
	    --eval-every 50 --ckpt-every 50 --threads $(THREADS),runs/collapse-pilot$(w2)); \
	done
	$(PY) -m experiments.plot $(foreach r,$(pilot_runs),runs/collapse-pilot$(w2)/$(r)) --out runs/collapse-pilot$(w2)/pilot.png \
	  --title "Collapse pilot, $(if $(w2),tiny world 2,the first tiny world): constant lr 3e-4, seed 100" --table

# make opsd: self-distillation in a tiny world. The default, tiny2-concise, is the second world's
# shared rule "Be concise.", internalised with no loss of accuracy (the paper's §5 success); WORLD=1's
# default is tiny-rule, "Answer with the final result only.", a rule that drops the steps and with them
# the accuracy. Per-instance PI (fails on purpose): tiny2-answer, tiny2-full (WORLD=1: tiny-answer,
# tiny-full), and on the student where it has something to learn (tiny2-answer-student,
# tiny2-full-student, tiny-...; 1,600 steps); controls tiny2-none, tiny-none; tiny2-constitution; the paper's math setting:
#   make opsd PRESET=paper MODEL=Qwen/Qwen3-1.7B
## PRESET=                make opsd's preset: tiny2-concise (the default), tiny2-constitution, tiny2-answer, tiny2-full, tiny2-answer-student, tiny2-full-student, tiny2-none, paper; WORLD=1: tiny-rule (its default), tiny-answer, tiny-full, tiny-answer-student, tiny-full-student, tiny-none
## OPSD_ARGS=             more train_opsd.py flags for make opsd, e.g. OPSD_ARGS="--steps 50 --teacher-mode ema"
PRESET ?=
OPSD_ARGS ?=
opsd_preset = $(or $(PRESET),$(if $(filter 1,$(WORLD)),tiny-rule,tiny2-concise))
opsd_out = $(or $(RUN),runs/opsd-$(now))
opts.opsd := THREADS WORLD RUN FRESH RESUME PRESET MODEL OPSD_ARGS LORA
why.opsd.SEEDS := make opsd trains one run: OPSD_ARGS=--seed N sets its seed
opsd: install  ## on-policy self-distillation, before/after + Mechanism 3 -> runs/opsd-DATE; minutes
	@$(call check_run,$(opsd_out))
	OMP_NUM_THREADS=$(THREADS) $(PY) train_opsd.py --preset $(opsd_preset) --out $(opsd_out) --threads $(THREADS) \
	  $(if $(MODEL),--student $(MODEL)) $(lora_flag) $(OPSD_ARGS) $(if $(RESUME),--resume)

opsd_presets = $(if $(w2),tiny2-concise tiny2-constitution tiny2-answer tiny2-full tiny2-none,tiny-rule tiny-answer tiny-full tiny-none)
opts.opsd-table := THREADS WORLD FRESH RESUME SEEDS
opsd-table: install  ## every PI setting of the world x SEEDS, then one table -> runs/opsd (WORLD=2: runs/opsd2); tens of minutes
	@$(if $(FRESH),$(call remove,runs/opsd$(w2),FRESH=1))
	@for p in $(opsd_presets); do for s in $(SEEDS); do \
	  $(call each_run,runs/opsd$(w2)/$$p-s$$s,OMP_NUM_THREADS=$(THREADS) $(PY) train_opsd.py --preset $$p --seed $$s --threads $(THREADS),runs/opsd$(w2)); \
	done; done
	$(PY) train_opsd.py --table $(foreach p,$(opsd_presets),$(foreach s,$(SEEDS),runs/opsd$(w2)/$(p)-s$(s)))

# make grpo: Fix 2's RLVR-adapted teacher. GRPO on a copy of the tiny student with the grader's
# reward (train_grpo.py --preset tiny; WORLD=2: --preset tiny2 into runs/grpo2); the paper's setting
# on a GPU: make grpo MODEL=Qwen/Qwen3-1.7B (into runs/grpo-DATE).
## GRPO_ARGS=             more train_grpo.py flags for make grpo, e.g. GRPO_ARGS="--steps 100"
GRPO_ARGS ?=
grpo_out = $(or $(RUN),$(if $(MODEL),runs/grpo-$(now),runs/grpo$(w2)))
opts.grpo := THREADS WORLD RUN FRESH RESUME MODEL GRPO_ARGS LORA
why.grpo.SEEDS := make grpo trains one run: GRPO_ARGS=--seed N sets its seed
grpo: install  ## GRPO with the grader's reward: the student lifted into runs/grpo (MODEL=: the paper's preset); minutes
	@$(call check_run,$(grpo_out))
	OMP_NUM_THREADS=$(THREADS) $(PY) train_grpo.py --out $(grpo_out) --threads $(THREADS) $(if $(w2),--preset tiny2) \
	  $(if $(MODEL),--preset paper --student $(MODEL)) $(lora_flag) $(GRPO_ARGS) $(if $(RESUME),--resume)

# make recipe: the paper's recipe end to end in the tiny world. SFT student -> RLVR teacher (make
# grpo) -> OPD with an unbiased Top-K loss, against OPD from the raw student with the off-the-shelf
# teacher and plain Top-K, in runs/recipe. The first world's SFT student is make sft-student's; in
# the second (runs/recipe2) it learns from the GRPO teacher's own traces, as in the report
# (docs/tiny_world2.md, "Revisions before the seeds"). Finished runs are reused; FRESH=1 deletes
# runs/recipe only, not the SFT student or the GRPO teacher, which belong to their own targets.
recipe_sft = $(if $(w2),runs/recipe2/sft-grpo,runs/sft-student)
opts.recipe := THREADS WORLD FRESH RESUME
recipe: install  ## SFT -> RLVR teacher -> unbiased Top-K OPD vs raw student + big teacher + plain Top-K -> runs/recipe; tens of minutes
	@$(if $(FRESH),$(call remove,runs/recipe$(w2),FRESH=1))
	@$(call sub_make,grpo,runs/grpo$(w2))
	@$(if $(w2),$(call each_run,$(recipe_sft),OMP_NUM_THREADS=$(THREADS) $(PY) train_sft.py --preset sft-student \
	  --student tiny2/student --teacher runs/grpo2/ckpt --threads $(THREADS),runs/recipe2),$(call sub_make,sft-student,runs/sft-student))
	@$(call each_run,runs/recipe$(w2)/recipe,OMP_NUM_THREADS=$(THREADS) $(PY) train_opd.py $(if $(w2),--preset tiny2) \
	  --student $(recipe_sft)/final --teacher runs/grpo$(w2)/ckpt --loss topk_tail --threads $(THREADS),runs/recipe$(w2))
	@$(call each_run,runs/recipe$(w2)/no-fix,OMP_NUM_THREADS=$(THREADS) $(PY) train_opd.py $(if $(w2),--preset tiny2) \
	  --loss topk_plain --threads $(THREADS),runs/recipe$(w2))
	$(PY) -m experiments.plot runs/recipe$(w2)/no-fix runs/recipe$(w2)/recipe --out runs/recipe$(w2)/curves.png --table

# make report: every mechanism and fix in tiny world 2, 3 seeds, runs in runs/report2/ (reused when
# finished, resumed when killed), RESULTS.md, results/tiny2/ and the README's headline; WORLD=1: the
# first world (runs/report/, RESULTS_tiny1.md). JOBS runs at a time, one thread each. FRESH=1
# deletes the runs folder first (RESULTS.md and the figures are written again at the end).
## JOBS=2                 make report and report-quick: runs at a time, one thread each
JOBS ?= 2
report_root = runs/report$(if $(filter 1,$(WORLD)),,2)
opts.report := WORLD JOBS FRESH
opts.report-quick := WORLD JOBS FRESH
why.report.RESUME := make report always continues: finished runs are reused and killed ones resumed
why.report-quick.RESUME := $(why.report.RESUME)
why.report.THREADS := make report runs JOBS runs at a time on one thread each
why.report-quick.THREADS := $(why.report.THREADS)
report: install  ## all experiments x 3 seeds -> RESULTS.md; hours on 2 cores (the collapse protocol's 45 runs the most), resumable; WORLD=1: RESULTS_tiny1.md
	@$(if $(FRESH),$(call remove,$(report_root),FRESH=1))
	$(PY) -m experiments.report --world $(or $(WORLD),2) --jobs $(JOBS)

report-quick: install  ## the same with 1 seed and short runs -> runs/report2-quick/RESULTS.md; about 15 min
	@$(if $(FRESH),$(call remove,$(report_root)-quick,FRESH=1))
	$(PY) -m experiments.report --world $(or $(WORLD),2) --quick --jobs $(JOBS)

# make plot draws RUN, by default the newest run under runs/: the folder whose metrics.jsonl was
# written last.
newest_run = $(patsubst %/metrics.jsonl,%,$(firstword $(shell find runs -name metrics.jsonl -exec ls -t {} + 2>/dev/null)))
plot_run = $(or $(RUN),$(newest_run))
opts.plot := RUN
plot: install  ## curves of a run into RUN/curves.png (default RUN: the newest run under runs/); seconds
	@test -n "$(plot_run)" || $(call refuse,no run under runs/ yet (no metrics.jsonl): train one first (make opd) or name one with RUN=)
	$(PY) -m experiments.plot $(plot_run)

opts.losses-demo :=
losses-demo: install  ## print the Mechanism 2 demonstration of losses.py; seconds
	$(PY) losses.py

opts.bench-losses := THREADS
bench-losses: install  ## chunked vs materialised losses: peak memory and time at V=151,936, CPU; about 10 min
	OMP_NUM_THREADS=$(THREADS) $(PY) bench/bench_losses.py --threads $(THREADS)

opts.bench-rollout :=
why.bench-rollout.THREADS := it compares at one thread; python bench/bench_rollout.py --threads N for more
bench-rollout: install  ## rollout.generate vs transformers generate, tokens/s at batch 1-64, CPU; about 5 min
	$(PY) bench/bench_rollout.py --threads 1

opts.bench-step := THREADS WORLD
bench-step: install  ## seconds per phase of one OPD step (rollout, teacher, student, optimizer), tiny world, CPU; under a minute (12 steps of 0.24 s)
	OMP_NUM_THREADS=$(THREADS) $(PY) bench/bench_step.py --threads $(THREADS) $(if $(w2),$(tiny2_pair))

opts.bench-threads :=
why.bench-threads.THREADS := it compares thread counts itself: python bench/bench_threads.py --threads 1 2 4
bench-threads: install  ## make opd (40 steps) with 1 and 2 threads, alone and beside a busy process: why THREADS=1; about 5 min
	$(PY) bench/bench_threads.py --threads 1 2

opts.bench-cpu := THREADS
why.bench-cpu.WORLD := bench/bench_cpu.py measures the first world's models only
bench-cpu: install  ## what sets the tiny world's CPU time: product rates, both scoring forwards, float32 vs bf16; minutes
	OMP_NUM_THREADS=$(THREADS) $(PY) bench/bench_cpu.py --threads $(THREADS)

opts.clean :=
clean:  ## remove caches (keeps .venv and runs/); seconds
	rm -rf __pycache__ .pytest_cache

# -----------------------------------------------------------------------------
# The checks, made before anything runs: a value a variable cannot take, two that contradict each
# other, and a variable given on the command line that the goal does not read all stop make with
# a message naming the variable, instead of being ignored.
comma := ,
user_vars := $(filter-out VENV PY TORCH_%,$(shell sed -n 's/^## \([A-Z_]*\)=.*/\1/p' $(self)))
checked := $(foreach t,$(shell sed -n 's/^\([a-z-]*\):.*\#\# .*/\1/p' $(self)),$(if $(filter-out undefined,$(origin opts.$(t))),$(t)))
# $(call one_of,NAME,VALUES,HINT): NAME is empty or one of VALUES
one_of = $(if $(strip $($(1))),$(if $(and $(filter 1,$(words $($(1)))),$(filter $(2),$($(1)))),,$(error $(1)=$($(1)) is not a value it takes: $(3))))
$(call one_of,WORLD,1 2,WORLD=1 is the first tiny world (tiny/) and WORLD=2 the second (tiny2/))
$(call one_of,FRESH,1,FRESH=1 deletes the target's run folder and starts over)
$(call one_of,RESUME,1,RESUME=1 continues the target's unfinished run)
$(call one_of,FORCE,1,FORCE=1 retrains the tiny models)
ifneq ($(and $(FRESH),$(RESUME)),)
  $(error FRESH=1 starts over and RESUME=1 continues: give one of them)
endif
ifneq ($(and $(WORLD),$(MODEL),$(filter opd opsd grpo,$(MAKECMDGOALS))),)
  $(error WORLD=$(WORLD) picks a tiny world and MODEL=$(MODEL) the paper's setting: give one of them)
endif
# make opsd's presets name their world (tiny-rule: 1, tiny2-concise: 2); a PRESET of the other world
# than WORLD is refused with its counterpart, when it has one.
preset_world = $(if $(filter tiny2-%,$(PRESET)),2,$(if $(filter tiny-%,$(PRESET)),1))
counterpart = $(if $(filter 2,$(WORLD)),$(if $(filter tiny-rule,$(PRESET)),tiny2-concise,$(patsubst tiny-%,tiny2-%,$(PRESET))), \
  $(if $(filter tiny2-concise,$(PRESET)),tiny-rule,$(filter-out tiny-constitution,$(patsubst tiny2-%,tiny-%,$(PRESET)))))
ifneq ($(and $(WORLD),$(PRESET),$(filter opsd,$(MAKECMDGOALS))),)
  ifneq ($(preset_world),$(WORLD))
    $(error PRESET=$(PRESET) $(if $(preset_world),is a preset of world $(preset_world),is not a tiny-world preset) but WORLD=$(WORLD): $(if $(and $(preset_world),$(strip $(counterpart))),type PRESET=$(strip $(counterpart)) WORLD=$(WORLD) or drop WORLD,drop WORLD))
  endif
endif
$(foreach g,$(or $(MAKECMDGOALS),help),$(if $(filter-out undefined,$(origin opts.$(g))),$(foreach v,$(filter-out $(opts.$(g)),$(given)), \
  $(error make $(g): $(v)=$($(v)) is refused$(comma) this target does not read $(v)$(if $(why.$(g).$(v)), ($(why.$(g).$(v))))$(comma) and make $(g) reads $(or $(opts.$(g)),no variable) (make help)))))
