"""Plumbing shared by every trainer, as plain functions: presets and flags (checked before
anything loads), a run's data, the prompt stream, the learning-rate schedule, sampling a batch,
the lock of a run folder (training runs and evaluations take the same one), messages, progress
bars and Markdown tables. The rest of the run folder (checkpoints, resume, the metrics log,
summaries) is run_folder.py.

What this file is
    train_opd.py, train_opsd.py, train_grpo.py, train_sft.py and tiny_world/build.py each own their
    loop; they call these functions for everything that is not their algorithm. Nothing here knows
    which algorithm runs: no trainer class, no hooks, no trainer's keys. Each script writes out its
    presets, declares its own flags with the checks below as their types, and passes in what it
    shows (the monitors of its progress bar, the rows of its final table).
"""

import argparse
import contextlib
import dataclasses
import fcntl
import hashlib
import json
import math
import os
import sys
import time

import torch
import tqdm

import data
import distributed
import rollout
from errors import UserError

# -----------------------------------------------------------------------------
# Config: a preset (a dict named after where its values come from), then the flags given on top

# The flags a --resume may give other values than the run's: they belong to one start of the run
# (where it stops, how many CPU threads it uses), not to the run.
RESUME_MAY_CHANGE = ("resume", "stop_at", "threads")


def parse_config(presets: dict, add_flags, argv=None, doc: str = "") -> tuple:
    """(config, typed) of a run: `presets[--preset]` with every flag given on the command line on
    top, and the keys a flag set (typed, or a flag's own default such as --seed's 0).

    `add_flags(parser)` adds the script's flags. Each flag checks its own value (a `type=` made by
    `ranged`) and defaults to None, so that an absent flag leaves the preset's value and is not in
    `typed`. The first preset is the default. Keys that only a preset sets are checked by the
    script that owns the preset (check_ranges).

    With --resume the config is the run's own, read from OUT/config.json (resumed_config), not a
    preset's; every key then counts as typed, so that no saved value is lowered to fit."""
    parser = build_parser(presets, add_flags, doc)
    args = parser.parse_args(argv)
    if getattr(args, "resume", False):
        cfg = resumed_config(parser, args, typed_args(parser, argv), presets)
        typed = set(cfg)
    else:
        cfg = dict(presets[args.preset])
        for key, val in vars(args).items():
            if val is not None or key not in cfg:
                cfg[key] = val
        typed = {key for key, val in vars(args).items() if val is not None}
    if cfg["stop_at"] and cfg["stop_at"] >= cfg["steps"]:
        raise UserError(
            f"--stop-at {cfg['stop_at']}: must be below --steps {cfg['steps']} (the run ends there anyway)"
        )
    return cfg, typed


def typed_args(parser, argv=None) -> dict:
    """key -> value of the flags given on the command line, and of no other (no defaults)."""
    defaults = [(a, a.default) for a in parser._actions]
    for a, _ in defaults:
        a.default = argparse.SUPPRESS  # an absent flag then leaves no key
    try:
        return vars(parser.parse_args(argv))
    finally:
        for a, default in defaults:
            a.default = default


def resumed_config(parser, args, given: dict, presets: dict) -> dict:
    """The config of `--out OUT --resume`: the run's OUT/config.json, with --stop-at as given (none
    by default: the run's own has been reached) and --threads as given (the run's when not
    given). Any other flag given must equal its saved value (same_setting), and --out must be
    where the run was written; the flags that differ are refused by name, before anything loads.
    run_folder.start_run checks the folder itself (a checkpoint, an unfinished run) and the whole
    config again."""
    out, flags = args.out, flags_of(parser)
    saved = saved_config(out)
    preset = saved.get("preset")
    if preset not in presets:
        raise UserError(
            f"--resume: the run in {out} started from --preset {preset!r}, which this script does not "
            f"have ({', '.join(presets)}); resume it with the script that started it"
        )
    # What a fresh start of the run's preset would set. A key the saved config lacks (a run of an
    # older version of the script) resumes only as None, the value that version ran with.
    fresh = dict(presets[preset])
    for key in vars(args):
        fresh.setdefault(key, parser.get_default(key))
    missing = [k for k, v in fresh.items() if k not in saved and v is not None]
    if missing:
        raise UserError(
            f"--resume: {os.path.join(out, 'config.json')} sets no "
            f"{', '.join(flag_name(k, flags) for k in missing[:3])}: it is not a run of this script "
            "(or of a version with other settings); resume it with the script that started it"
        )
    cfg = {k: v for k, v in fresh.items() if k not in saved}
    cfg.update(saved, resume=True, stop_at=args.stop_at)
    if "threads" in given:
        cfg["threads"] = given["threads"]
    changed = changed_settings(saved, dict(given, out=out))
    if changed:
        raise UserError(resume_refusal(out, changed, flags))
    return cfg


def saved_config(out: str) -> dict:
    """OUT/config.json of the run that `--out OUT --resume` continues; a UserError when OUT holds
    no run."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise UserError(f"--out {out}: a file, not a folder; choose another --out")
    if not os.path.isdir(out):
        raise UserError(f"--resume: no run folder {out}; start without --resume, or pass the run's --out")
    path = os.path.join(out, "config.json")
    if not os.path.isfile(path):
        raise UserError(
            f"--resume: {out} holds no config.json, so no run started there; start without --resume, "
            "or pass the run's --out"
        )
    try:
        with open(path) as f:
            saved = json.load(f)
    except (ValueError, UnicodeDecodeError) as e:
        raise UserError(f"--resume: {path} is not valid JSON ({e}); it is no run's config") from None
    if not isinstance(saved, dict):
        raise UserError(f"--resume: {path} holds no JSON object; it is no run's config")
    return saved


def same_setting(a, b) -> bool:
    """Whether a saved config value and a new one mean the same: equal, or two spellings of one
    existing path (`tiny/student` and `./tiny/student/`)."""
    if a == b:
        return True
    if isinstance(a, str) and isinstance(b, str) and (os.path.exists(a) or os.path.exists(b)):
        return os.path.realpath(a) == os.path.realpath(b)
    return False


def changed_settings(saved: dict, new: dict) -> dict:
    """key -> (saved value, new value) for every key of `new` (RESUME_MAY_CHANGE aside) whose value
    is not the saved one's (same_setting); a key the saved config lacks counts as None there."""
    return {
        k: (saved.get(k), v)
        for k, v in new.items()
        if k not in RESUME_MAY_CHANGE and not same_setting(saved.get(k), v)
    }


def resume_refusal(out: str, changed: dict, flags: dict = None) -> str:
    """The message that refuses a --resume whose config is not the run's: each changed key as its
    flag (`flags`: key -> flag; else --key), the saved value and the new one."""
    flag = lambda k: (flags or {}).get(k, "--" + k.replace("_", "-"))
    told = ", ".join(f"{flag(k)} was {a!r}, now {b!r}" for k, (a, b) in changed.items())
    may = " and ".join(flag(k) for k in RESUME_MAY_CHANGE if k != "resume")
    return (
        f"--resume with another config than the run in {out}: {told}; leave those flags out to continue "
        f"with the run's own (its config.json); only {may} may change"
    )


def build_parser(presets: dict, add_flags, doc: str = "") -> argparse.ArgumentParser:
    """--preset (one of `presets`, the first by default) and the flags `add_flags(parser)` adds."""
    ap = argparse.ArgumentParser(
        description=doc.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    default = next(iter(presets))
    ap.add_argument(
        "--preset",
        default=default,
        choices=list(presets),
        help=f"defaults for every flag (default: {default})",
    )
    add_flags(ap)
    return ap


# The range of a numeric setting: (test, what the message asks for). `ranged` makes a flag's
# `type=` of one; check_ranges checks a dict of values against a table of them.
AT_LEAST_1 = (lambda v: v >= 1, "an integer >= 1")
AT_LEAST_0 = (lambda v: v >= 0, ">= 0")
ABOVE_0 = (lambda v: v > 0, "> 0")
PROB = (lambda v: 0 <= v <= 1, "in [0, 1]")
BELOW_1 = (lambda v: 0 <= v < 1, "in [0, 1)")
TOP_P = (lambda v: 0 < v <= 1, "in (0, 1] (1 = off)")
TEMPERATURE_OR_GREEDY = (lambda v: v >= 0, ">= 0 (0 = greedy)")


def ranged(convert, rule: tuple):
    """An argparse `type=`: a flag's text through `convert` (int or float), refused unless `rule`
    holds (a NaN never does). argparse names the flag: `argument --top-p: must be in (0, 1]
    (1 = off), not 1.5`; text that is no number gets its `invalid float value: 'x'`."""
    ok, what = rule

    def parse(text: str):
        value = convert(text)
        if (isinstance(value, float) and math.isnan(value)) or not ok(value):
            raise argparse.ArgumentTypeError(f"must be {what}, not {text}")
        return value

    parse.__name__ = convert.__name__
    return parse


positive_int = ranged(int, AT_LEAST_1)
nonneg_int = ranged(int, (lambda v: v >= 0, "an integer >= 0"))
positive_float = ranged(float, ABOVE_0)
nonneg_float = ranged(float, AT_LEAST_0)
below_one = ranged(float, BELOW_1)
top_p = ranged(float, TOP_P)
temperature_or_greedy = ranged(float, TEMPERATURE_OR_GREEDY)
sampling_temperature = ranged(float, (lambda v: v > 0, "> 0 (training samples; 1.0 is the paper's)"))
learning_rate = ranged(float, (lambda v: v > 0 and math.isfinite(v), "a finite number > 0"))


def flag_name(key: str, flags: dict) -> str:
    """How the user sets `key`: its flag, or (for a key only a preset sets) the preset's key."""
    return flags.get(key, f"the preset's {key!r}")


def check_ranges(values: dict, flags: dict, rules: dict) -> None:
    """Every value of `values` that `rules` names within its range; a UserError naming the flag
    otherwise. `flags` maps keys to their flags (flag_name)."""
    for key, (ok, what) in rules.items():
        v = values.get(key)
        if v is None or isinstance(v, bool):
            continue
        if not isinstance(v, (int, float)) or (isinstance(v, float) and math.isnan(v)) or not ok(v):
            raise UserError(f"{flag_name(key, flags)} {v}: must be {what}")


def flags_of(parser) -> dict:
    """key -> the flag that sets it, for a parser's options."""
    return {a.dest: a.option_strings[0] for a in parser._actions if a.option_strings}


def fit_micro_batch(cfg: dict, typed: set, rows: int, batch: str) -> None:
    """micro_batch (rows per forward/backward) at most the `rows` of a batch (`batch` says how they
    are counted): the preset's value is lowered to them; a --micro-batch typed above them is refused."""
    if cfg["micro_batch"] <= rows:
        return
    if "micro_batch" in typed:
        raise UserError(
            f"--micro-batch {cfg['micro_batch']}: must be at most the {rows} rows of a batch ({batch})"
        )
    cfg["micro_batch"] = rows


def check_data_path(cfg: dict) -> None:
    """--data-path replaces the hub download of the dataset that --data names; a UserError when
    --data names none."""
    if cfg["data_path"] and cfg["data"] not in data.DATASETS:
        raise UserError(
            f"--data-path {cfg['data_path']}: it replaces the hub download of a named dataset "
            f"({', '.join(sorted(data.DATASETS))}), but --data is {cfg['data']!r}; pass "
            f"--data NAME with it, or give a local file as --data FILE"
        )


def add_data_flags(g) -> None:
    g.add_argument(
        "--data", help="training prompts: synthetic, dapo, openthoughts, math500, or a .jsonl path"
    )
    g.add_argument(
        "--data-path", help="read the dataset named by --data from this local file instead of the hub"
    )
    g.add_argument(
        "--eval-data", help="held-out problems: synthetic, math500, aime24, aime25, or a .jsonl path"
    )


def add_rollout_flags(ap) -> None:
    g = ap.add_argument_group("rollout")
    g.add_argument("--batch-size", type=positive_int, help="prompts per step (paper: 64)")
    g.add_argument("--max-new-tokens", type=positive_int, help="response length cap (paper: 4096)")
    g.add_argument("--temperature", type=sampling_temperature, help="sampling temperature (paper: 1.0)")
    g.add_argument("--top-p", type=top_p, help="nucleus sampling (paper: 0.95)")
    g.add_argument(
        "--rollout-batch",
        type=nonneg_int,
        help="rows sampled at a time (the KV cache holds this many rows; 0: the whole batch; "
        "under torchrun it divides each process's rows); the sampling noise depends on the "
        "grouping, so changing it changes the draws",
    )
    g.add_argument(
        "--cuda-graph", action="store_true", help="capture the sampler's decode step as a CUDA graph"
    )
    g.add_argument(
        "--rollout-dtype",
        choices=sorted(SAMPLING_DTYPES),
        help="the precision the student samples in, from a copy of its weights made for each rollout (the "
        "training weights stay float32); default: bfloat16 where the training forward runs in bf16 "
        "autocast (CUDA), else the weights' own. The rollout-vs-train log-prob monitor shows its price",
    )
    g.add_argument(
        "--forward",
        choices=("auto", "ours", "transformers"),
        help="the forward that scores responses with and without gradients (rollout.score): ours, the "
        "sampler's written-out decoder; transformers, the model's own; auto (default): ours where "
        "it applies (not under FSDP or activation checkpointing)",
    )


def add_optim_flags(ap) -> None:
    g = ap.add_argument_group("optimisation (AdamW, linear warm-up, cosine decay)")
    g.add_argument(
        "--steps",
        type=positive_int,
        help="training steps: rollout batches (OPD, OPSD, GRPO; each one optimizer step, or "
        "--minibatches of them) or batches (SFT); paper: 1000",
    )
    g.add_argument(
        "--micro-batch",
        type=positive_int,
        help="rows per forward/backward, at most the rows of a batch (a preset's value is lowered "
        "to them); gradients accumulate over the batch",
    )
    g.add_argument("--lr", type=learning_rate, help="peak learning rate (paper OPD: 2e-6)")
    g.add_argument("--grad-clip", type=nonneg_float, help="clip the gradient norm at this value (0 = off)")


def add_eval_flags(ap) -> None:
    g = ap.add_argument_group("evaluation")
    g.add_argument(
        "--eval-every",
        type=nonneg_int,
        help="evaluate the student every this many steps (0 = start and end only)",
    )
    g.add_argument("--eval-n", type=positive_int, help="held-out problems per evaluation")


def add_run_flags(ap, out: str) -> None:
    g = ap.add_argument_group("run folder, checkpoints, hardware")
    g.add_argument(
        "--out", default=out, help=f"run folder: config.json, metrics.jsonl, eval/, ckpt/ (default: {out})"
    )
    g.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its checkpoint, exactly"
    )
    g.add_argument(
        "--stop-at",
        type=nonneg_int,
        default=0,
        help="stop after this step with a checkpoint, to continue with --resume (a job with a time limit)",
    )
    g.add_argument(
        "--ckpt-every", type=nonneg_int, help="save a checkpoint every this many steps (0 = only at the end)"
    )
    g.add_argument("--seed", type=nonneg_int, default=0, help="seeds data order, sampling and evaluation")
    g.add_argument("--threads", type=nonneg_int, default=0, help="CPU threads (0 = torch's default)")


def loss_options(cfg: dict) -> dict:
    """The options of losses.LOSSES[cfg["loss"]] that the config sets: k of the Top-K losses, beta of jsd."""
    if cfg["loss"].startswith("topk"):
        return {"k": cfg["k"]}
    return {"beta": cfg["beta"]} if cfg["loss"] == "jsd" else {}


# -----------------------------------------------------------------------------
# A run's data: the examples, their lengths against the context, this process's rows, the step's noise


def load_examples(cfg: dict, which: str) -> list:
    """The training problems (`which="train"`) or the first eval_n held-out ones (`"eval"`)."""
    name = cfg["data"] if which == "train" else cfg["eval_data"]
    if name == "synthetic":
        n = 20_000 if which == "train" else cfg["eval_n"]
        return data.load_examples(
            "synthetic",
            n=n,
            split="train" if which == "train" else "eval",
            seed=cfg["seed"],
            hard_frac=cfg["hard_frac"],
            flagged_frac=cfg["flagged_frac"],
        )
    examples = data.load_examples(name, path=cfg["data_path"] if which == "train" else None)
    return examples if which == "train" else examples[: cfg["eval_n"]]


def check_prompt_lengths(limit, prompts: list, max_new_tokens: int, what: str, examples: list = None) -> None:
    """Every prompt (token ids) plus max_new_tokens within the context `limit` (None: no limit);
    a UserError naming the longest offender (its example id and source, when `examples` are given)."""
    if limit is None or not prompts:
        return
    over = [i for i, p in enumerate(prompts) if len(p) + max_new_tokens > limit]
    if over:
        worst = max(over, key=lambda i: len(prompts[i]))
        ex = examples[worst] if examples is not None else None
        where = ""
        if ex is not None:
            where = (
                f" ({ex.where}, example {ex.id!r})" if getattr(ex, "where", "") else f" (example {ex.id!r})"
            )
        room = f" with {max_new_tokens} new tokens" if max_new_tokens else ""
        raise UserError(
            f"{len(over)} of {len(prompts)} {what} do not fit the model's context of {limit} tokens{room}; "
            f"the longest has {len(prompts[worst])}{where}; lower the length cap, or filter long problems "
            "out of the data"
        )


def check_held_out(limit, tok, examples: list, cfg: dict) -> None:
    """The held-out prompts, with the evaluation's length cap, within the context `limit`."""
    check_prompt_lengths(
        limit,
        [data.context_ids(tok, ex) for ex in examples],
        cfg["eval_max_new_tokens"],
        "held-out prompts",
        examples,
    )


def my_rows(batch: list) -> list:
    """This process's share of a batch (every process reads the same stream): all of it in one process."""
    rank, world = distributed.world()
    return batch[rank * len(batch) // world : (rank + 1) * len(batch) // world]


def step_generator(cfg: dict, step: int, device) -> torch.Generator:
    """The sampling noise of a training step, a function of (seed, step): a resumed run draws what
    the uninterrupted one drew."""
    return torch.Generator(device=device).manual_seed(cfg["seed"] * 1_000_003 + step)


# -----------------------------------------------------------------------------
# The prompt stream: deterministic shuffling, resumable iteration


def epoch_order(n: int, seed: int, epoch: int) -> list:
    """A permutation of range(n), a pure function of (seed, epoch): sorted by a hash, so it is
    the same on every machine and Python version."""

    def key(i):
        return hashlib.sha256(f"{seed}:{epoch}:{i}".encode()).digest()

    return sorted(range(n), key=key)


def fingerprint(examples: list) -> str:
    """A short hash of a list of dataclass items (Examples, SFT items): a stream's saved state
    only resumes over the same items."""
    h = hashlib.sha256()
    for ex in examples:
        fields = tuple(
            getattr(ex, f.name) for f in dataclasses.fields(ex) if f.metadata.get("identity", True)
        )
        h.update(repr(fields).encode() + b"\0")
    return h.hexdigest()[:16]


class PromptStream:
    """Endless batches of examples, reshuffled every epoch (`shuffle=False`: file order).

    The state is (seed, epoch, position), so a run that saves `state_dict()` with its checkpoint
    and calls `load_state_dict` on resume sees exactly the batches it would have seen. A batch that
    crosses an epoch boundary is completed from the next epoch's order."""

    def __init__(self, examples: list, batch_size: int, seed: int = 0, shuffle: bool = True):
        if not examples:
            raise ValueError("PromptStream needs at least one example")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.examples, self.batch_size, self.seed, self.shuffle = examples, batch_size, seed, shuffle
        self.epoch, self.position = 0, 0
        self._fingerprint = fingerprint(examples)
        self._order = self._make_order()

    def _make_order(self) -> list:
        n = len(self.examples)
        return epoch_order(n, self.seed, self.epoch) if self.shuffle else list(range(n))

    def __iter__(self):
        return self

    def __next__(self) -> list:
        batch = []
        while len(batch) < self.batch_size:
            if self.position == len(self.examples):
                self.epoch, self.position = self.epoch + 1, 0
                self._order = self._make_order()
            batch.append(self.examples[self._order[self.position]])
            self.position += 1
        return batch

    def state_dict(self) -> dict:
        return {
            "seed": self.seed,
            "epoch": self.epoch,
            "position": self.position,
            "shuffle": self.shuffle,
            "n": len(self.examples),
            "fingerprint": self._fingerprint,
        }

    def load_state_dict(self, state: dict) -> None:
        if state["n"] != len(self.examples) or state["fingerprint"] != self._fingerprint:
            raise ValueError(
                f"this stream state belongs to another dataset ({state['n']} examples, "
                f"fingerprint {state['fingerprint']}; here {len(self.examples)}, "
                f"{self._fingerprint}); resume with the same data and filters"
            )
        self.seed, self.shuffle = state["seed"], state["shuffle"]
        self.epoch, self.position = state["epoch"], state["position"]
        self._order = self._make_order()


# -----------------------------------------------------------------------------
# Optimisation: AdamW with a linear warm-up and a cosine decay


def optimizer(model, cfg: dict, steps: int) -> tuple:
    """AdamW over the model's parameters and its schedule over `steps` optimizer steps: linear
    warm-up over warmup_frac of them, then a cosine from lr down to min_lr."""
    opt = torch.optim.AdamW(
        model.parameters(), lr=cfg["lr"], betas=(cfg["beta1"], cfg["beta2"]), weight_decay=cfg["weight_decay"]
    )
    return opt, cosine_schedule(opt, steps, cfg["warmup_frac"], cfg["min_lr"] / cfg["lr"])


def cosine_schedule(optimizer, steps: int, warmup_frac: float, min_ratio: float = 0.0):
    warmup = max(1, round(warmup_frac * steps)) if warmup_frac > 0 else 0

    def factor(step):
        if step < warmup:
            return (step + 1) / warmup
        cos = 0.5 * (1.0 + math.cos(math.pi * min((step - warmup) / max(steps - warmup, 1), 1.0)))
        return cos if min_ratio == 0 else min_ratio + (1.0 - min_ratio) * cos

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class Diverged(UserError):
    """A non-finite loss or gradient: the optimizer step is not taken and the run stops, its last
    good checkpoint intact."""


DIVERGED_HINT = (
    "the step was not taken and nothing was saved: ckpt/ holds the last good checkpoint; lower --lr "
    "(or --grad-clip) and start again, or --resume to retry from the checkpoint"
)


def clip_grad_norm(model, max_norm: float) -> float:
    """Clip the gradient's global norm (over every shard under FSDP) at max_norm (0 = no clip); its
    norm. A NaN or infinite norm raises Diverged before any weight changes."""
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm if max_norm > 0 else float("inf"))
    norm = float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)
    if not math.isfinite(norm):
        raise Diverged(f"non-finite gradient norm ({norm}); {DIVERGED_HINT}")
    return norm


def check_finite_loss(loss, what: str = "loss") -> None:
    """Diverged for a NaN or infinite loss (before its backward pass)."""
    if not torch.isfinite(loss):
        raise Diverged(f"non-finite {what} ({loss.item()}); {DIVERGED_HINT}")


# -----------------------------------------------------------------------------
# Sampling a batch with the student: rollout.generate, --rollout-batch rows at a time


def chunk_generator(generator: torch.Generator, chunk: int) -> torch.Generator:
    """The sampling noise of rollout chunk `chunk` of a step (--rollout-batch rows each): chunk 0
    draws from the step's generator, chunk c > 0 from one seeded by (the step's seed, c). The draws
    of a chunk do not depend on which process samples it (distributed.py)."""
    if chunk == 0:
        return generator
    return torch.Generator(device=generator.device).manual_seed(generator.initial_seed() + 1_000_033 * chunk)


SAMPLING_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def sampling_dtype(cfg: dict, model) -> torch.dtype:
    """The dtype the student samples in: --rollout-dtype, or by default bf16 when its training forward
    runs under bf16 autocast (the sampler then computes what training computes, from half the bytes)
    and the weights' own dtype otherwise."""
    if cfg["rollout_dtype"]:
        return SAMPLING_DTYPES[cfg["rollout_dtype"]]
    return torch.bfloat16 if cfg["amp"] else next(model.parameters()).dtype


def sample_batch(model, tok, prompts: list, cfg: dict, generator) -> tuple:
    """One response per prompt of this process, --rollout-batch rows at a time (the KV cache is
    rollout_batch x (P + T)), in `sampling_dtype`: per row its ids (EOS included), the sampler's
    log p(y_t) at T = 1, and whether it was truncated."""
    dtype = sampling_dtype(cfg, model)
    rank, world = distributed.world()
    rb = cfg["rollout_batch"] or len(prompts)
    if world > 1 and len(prompts) % rb:  # else a process's chunks would not be whole chunks of the batch
        raise ValueError(f"--rollout-batch {rb} must divide the {len(prompts)} rows of each process")
    responses, logp, truncated = [], [], []
    with distributed.full_weights(model):  # the sampler reads the weights directly
        for c, start in enumerate(range(0, len(prompts), rb)):
            # the chunk's index in the whole batch
            gen = chunk_generator(generator, rank * (len(prompts) // rb) + c)
            ro = rollout.generate(
                model,
                prompts[start : start + rb],
                cfg["max_new_tokens"],
                temperature=cfg["temperature"],
                top_p=cfg["top_p"],
                eos_token_ids=tok.eos_token_ids,
                pad_token_id=tok.pad_token_id,
                generator=gen,
                cuda_graph=cfg["cuda_graph"],
                dtype=dtype,
            )
            for row, ids in enumerate(ro.responses()):
                responses.append(ids)
                logp.append(ro.logp[row, : len(ids)])
                truncated.append(bool(ro.truncated[row]))
    return responses, logp, truncated


@contextlib.contextmanager
def timed(times: dict, phase: str):
    """`with timed(times, "rollout"): ...` adds the block's wall-clock seconds to times["time/rollout_s"]."""
    t0 = time.perf_counter()
    yield
    key = f"time/{phase}_s"
    times[key] = times.get(key, 0.0) + time.perf_counter() - t0


# -----------------------------------------------------------------------------
# The lock of a run folder

_LOCKS = {}  # run folder (real path) -> the open lock file this process holds


def lock_folder(out: str) -> None:
    """An exclusive lock on `out/.lock` for the life of this process: two runs (a training run, an
    evaluation) never interleave in one folder. The kernel drops it when the process ends, killed
    or not: no stale lock."""
    key = os.path.realpath(out)
    if key in _LOCKS:  # this process holds it already (a run started again in the same process)
        return
    f = open(os.path.join(out, ".lock"), "a")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        raise UserError(
            f"--out {out}: another live process is using this run folder; wait for it to end, or "
            "choose another --out"
        ) from None
    _LOCKS[key] = f


def unlock_folder(out: str) -> None:
    """Release the lock lock_folder took (a run that ends inside a longer-lived process)."""
    f = _LOCKS.pop(os.path.realpath(out), None)
    if f is not None:
        f.close()


# -----------------------------------------------------------------------------
# Messages and progress bars


def say(*args, **kwargs) -> None:
    """Print a message to stderr from rank 0, between the lines of any progress bar."""
    if distributed.is_main():
        tqdm.tqdm.write(" ".join(str(a) for a in args), file=sys.stderr, **kwargs)


PROGRESS_LINE_S = 30.0  # off a terminal: seconds between two plain progress lines


def progress(iterable=None, total=None, initial: int = 0, desc: str = "", disable: bool = False):
    """Progress on stderr from rank 0: a tqdm bar on a terminal; elsewhere (a log file, CI) a plain
    line such as `OPD: 120/300 (40%) [00:36<00:54, 3.33it/s, loss 0.12]` at most every
    PROGRESS_LINE_S seconds, and a last one at the end when any was printed (a run shorter than
    that prints none)."""
    if disable or not distributed.is_main():
        return tqdm.tqdm(iterable, total=total, initial=initial, disable=True)
    if sys.stderr.isatty():
        return tqdm.tqdm(
            iterable, total=total, initial=initial, desc=desc, file=sys.stderr, dynamic_ncols=True
        )
    return _ProgressLines(iterable, total, initial, desc)


class _ProgressLines:
    """What the trainers use of a tqdm bar (iteration, update, set_postfix_str, close), printed as
    plain lines ending in a newline, which a log keeps one under the other."""

    def __init__(self, iterable, total, initial: int, desc: str):
        if total is None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.iterable, self.total, self.n, self.initial, self.desc = iterable, total, initial, initial, desc
        self.postfix, self.with_postfix = "", False
        self.shown = None  # the count of the last line printed
        self.t0 = self.last = time.time()

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update()
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        if not self.with_postfix:  # else the line waits for this step's postfix, which follows
            self.line_if_due()

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.postfix, self.with_postfix = s, True
        self.line_if_due()

    def line_if_due(self) -> None:
        if time.time() - self.last >= PROGRESS_LINE_S:
            self.line()

    def close(self) -> None:
        if self.shown is not None and self.shown != self.n:
            self.line()

    def line(self) -> None:
        head = f"{self.desc}: " if self.desc else ""
        if self.total:
            count = "{n_fmt}/{total_fmt} ({percentage:.0f}%) [{elapsed}<{remaining}"
        else:
            count = "{n_fmt} [{elapsed}"
        fmt = head + count + ", {rate_fmt}{postfix}]"
        elapsed = time.time() - self.t0
        meter = tqdm.tqdm.format_meter(
            self.n, self.total, elapsed, bar_format=fmt, postfix=self.postfix or None, initial=self.initial
        )
        print(meter, file=sys.stderr, flush=True)
        self.shown, self.last = self.n, time.time()


def postfix(m: dict, keys: tuple) -> str:
    """A bar's postfix: the monitors `keys` ((metric, short name) pairs) present in `m`."""
    return "  ".join(f"{name} {m[key]:.4g}" for key, name in keys if key in m)


# -----------------------------------------------------------------------------
# Markdown tables


def md_table(header: list, rows: list) -> str:
    """A Markdown table: one header row, then one row per list of cells (printed with str())."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def acc_ci(e: dict, digits: int = 3) -> str:
    """pass@1 with its 95 % interval, e.g. `0.533 [0.477, 0.589]`."""
    lo, hi = e["acc/pass@1_ci"]
    return f"{e['acc/pass@1']:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def summary_table(title: str, s: dict, cfg: dict, rows: list) -> str:
    """The table a trainer prints at the end: `title` (what trained), the run's length, evaluation
    and seed, then one row per (label, held-out evaluation) of `rows`."""
    cells = lambda e: [
        acc_ci(e),
        f"{e['len/mean']:.1f}",
        f"{e['len/truncated_frac']:.3f}",
        f"{e['rep/ratio']:.3f}",
    ]
    return (
        f"{title}, {cfg['steps']} steps, {cfg['eval_n']} held-out problems, T={cfg['eval_temperature']}, "
        f"seed {cfg['seed']}, {s['wall_s']} s of training\n"
        + md_table(
            ["model", "accuracy (95% CI)", "len mean", "truncated", "repetition"],
            [[who, *cells(e)] for who, e in rows],
        )
    )
