"""The config of a run: a preset, then the flags given on top, each checked before anything loads.

What this file is
    Every script writes out its presets (a dict of dicts, named after where the values come from)
    and declares its flags; `parse_config` resolves `presets[--preset]` with the flags typed on top,
    and with `--resume` reads the run's own OUT/config.json instead (`resumed_config`), refusing by
    name any flag that differs from the saved value. A flag's `type=` checks its range (`ranged`
    and its named helpers: positive_int, top_p, ...); keys only a preset sets are checked against
    a table of the same rules (`check_ranges`). The flag groups every trainer shares (data,
    rollout, optimisation, evaluation, run folder) are here, and so are the few checks that read
    several keys at once (`fit_micro_batch`, `check_data_path`) and the loss options a config sets.

Paper (docs/paper.md)
    §2.4 hyperparameters: the presets (`--preset paper`) that the scripts write out with these flags.

Command
    python train_opd.py --preset paper --lr 1e-6   # the paper's settings, one flag on top
    python train_opd.py --out runs/x --resume      # the run's own config.json; only --stop-at, --threads change

What it simplifies
    * A config is a plain dict (key -> value), saved as config.json; no config classes, no files of
      presets: each script's presets are a dict in the script.
    * Every flag defaults to None, so an absent flag leaves the preset's value; a script checks its
      own combinations of keys after parse_config.
"""

import argparse
import json
import math
import os

import torch

import data
import lora
from errors import UserError
from tiny_world import partition

# -----------------------------------------------------------------------------
# Config: a preset (a dict named after where its values come from), then the flags given on top

# The precisions a --rollout-dtype (or a script's --teacher-dtype) names; common.sampling_dtype reads them.
SAMPLING_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}

# The flags a --resume may give other values than the run's: they belong to one start of the run
# (how it starts, where it stops, how many CPU threads it uses, what the collapse alarm does), not
# to the run.
RESUME_MAY_CHANGE = ("resume", "restart", "stop_at", "threads", "on_collapse")


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
    if getattr(args, "resume", False) and getattr(args, "restart", False):
        raise UserError("--resume and --restart: choose one (continue the run, or start it over)")
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
    if cfg.get("min_lr") is not None and cfg["min_lr"] > cfg["lr"]:
        raise UserError(
            f"--min-lr {cfg['min_lr']}: must be at most --lr {cfg['lr']} (the cosine decays from --lr to it)"
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
    by default: the run's own has been reached), --threads and --on-collapse as given (the run's
    when not given). Any other flag given must equal its saved value (same_setting); the flags that
    differ are refused by name, before anything loads. --out is where the folder is now: a run
    folder that was moved resumes there.
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
    missing = [k for k, v in fresh.items() if k not in saved and v is not None and k not in RESUME_MAY_CHANGE]
    if missing:
        raise UserError(
            f"--resume: {os.path.join(out, 'config.json')} sets no "
            f"{', '.join(flag_name(k, flags) for k in missing[:3])}: it is not a run of this script "
            "(or of a version with other settings); resume it with the script that started it"
        )
    cfg = {k: v for k, v in fresh.items() if k not in saved}
    # the folder is the run wherever it now is (a moved folder resumes where it lies)
    cfg.update(saved, resume=True, restart=False, stop_at=args.stop_at, out=out)
    for key in ("threads", "on_collapse"):
        if key in given:
            cfg[key] = given[key]
    changed = changed_settings(saved, {k: v for k, v in given.items() if k != "out"})
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
    if not os.path.isfile(path) and os.path.isfile(os.path.join(out, "run.json")):
        raise UserError(
            f"--resume: the run in {out} has lost its config.json (its flags); start it over with "
            f"`--out {out} --restart` and the run's flags, or choose another --out"
        )
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
    may = [
        flag(k) for k in RESUME_MAY_CHANGE if k not in ("resume", "restart") and (flags is None or k in flags)
    ]
    may = " and ".join([", ".join(may[:-1]), may[-1]] if len(may) > 1 else may)
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
# A seed: torch's generators take 64 bits, and the sampling and evaluation seeds are derived from
# it as seed * 1_000_003 + a step or batch number, which stays within them for any seed below 2**32.
SEED = (lambda v: 0 <= v < 2**32, "an integer in [0, 2**32)")


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
seed_int = ranged(int, SEED)


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
    g.add_argument(
        "--min-lr",
        type=nonneg_float,
        help="learning rate at the end of the cosine (equal to --lr: a constant learning rate)",
    )
    g.add_argument("--grad-clip", type=nonneg_float, help="clip the gradient norm at this value (0 = off)")


def add_eval_flags(ap) -> None:
    g = ap.add_argument_group("evaluation")
    g.add_argument(
        "--eval-every",
        type=nonneg_int,
        help="evaluate the student every this many steps (0 = start and end only)",
    )
    g.add_argument("--eval-n", type=positive_int, help="held-out problems per evaluation")
    g.add_argument(
        "--eval-k",
        type=positive_int,
        help="responses sampled per held-out problem: a problem scores the mean of its k (avg@k)",
    )
    g.add_argument(
        "--eval-part",
        choices=partition.HELD_OUT,
        help="the synthetic task's held-out set from the eval split's partition (docs/protocol.md §2: "
        "E0..E4 a report seed's evaluation, S the selection set), its first --eval-n problems; "
        "default: drawn from the whole eval split by --seed",
    )


def add_run_flags(ap, out: str) -> None:
    g = ap.add_argument_group("run folder, checkpoints, hardware")
    g.add_argument(
        "--out", default=out, help=f"run folder: config.json, metrics.jsonl, eval/, ckpt/ (default: {out})"
    )
    g.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its checkpoint, exactly"
    )
    g.add_argument(
        "--restart",
        action="store_true",
        help="start the unfinished run in --out over from step 0 (its checkpoint and metrics are removed)",
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
    g.add_argument("--seed", type=seed_int, default=0, help="seeds data order, sampling and evaluation")
    g.add_argument("--threads", type=nonneg_int, default=0, help="CPU threads (0 = torch's default)")


def lora_targets(text: str) -> list:
    """--lora-targets: comma-separated projection names of lora.TARGETS -> a list, in that order."""
    names = [t.strip() for t in text.split(",") if t.strip()]
    wrong = [t for t in names if t not in lora.TARGETS]
    if wrong or not names:
        raise argparse.ArgumentTypeError(
            f"{wrong[0] if wrong else text!r} is no projection; name some of {','.join(lora.TARGETS)}"
        )
    return [t for t in lora.TARGETS if t in names]


# With adapters and no --lr, the preset's learning rate (and its cosine's floor) times this: LoRA's
# best rate is about ten times full fine-tuning's across model sizes and datasets (Schulman et al.,
# "LoRA Without Regret", Thinking Machines, 2025); docs/lora.md uses it in the tiny world.
LORA_LR_SCALE = 10


def add_lora_flags(ap) -> None:
    g = ap.add_argument_group("low-rank adapters (lora.py, docs/lora.md)")
    g.add_argument(
        "--lora-rank",
        type=nonneg_int,
        help=f"R > 0: train adapters W + (α/R) B A of rank R on the target projections, the rest frozen, "
        f"at {LORA_LR_SCALE}x the preset's --lr unless --lr is given; 0 (the default): the full weights",
    )
    g.add_argument("--lora-alpha", type=positive_float, help="α of the adapters' scale α/R (default 2R)")
    g.add_argument(
        "--lora-targets",
        type=lora_targets,
        help=f"comma-separated projections that get adapters (default: all, {','.join(lora.TARGETS)})",
    )


def check_lora(cfg: dict, typed: set) -> None:
    """The adapters' settings: with --lora-rank R > 0, α (default 2R) and the targets (default all)
    written into the config, and the preset's learning rates not typed (`typed`: the keys a flag set)
    scaled by LORA_LR_SCALE; without, --lora-alpha and --lora-targets are refused (they would do
    nothing)."""
    if not cfg.get("lora_rank"):
        for key in ("lora_alpha", "lora_targets"):
            if cfg.get(key) is not None:
                raise UserError(
                    f"--{key.replace('_', '-')} sets the low-rank adapters, which need --lora-rank R > 0 "
                    "(without it the full weights train)"
                )
        return
    for key in ("lr", "min_lr"):
        if key not in typed and cfg.get(key):
            cfg[key] *= LORA_LR_SCALE
    if cfg.get("lora_alpha") is None:
        cfg["lora_alpha"] = 2 * cfg["lora_rank"]
    if cfg.get("lora_targets") is None:
        cfg["lora_targets"] = list(lora.TARGETS)


def loss_options(cfg: dict) -> dict:
    """The options of losses.LOSSES[cfg["loss"]] that the config sets: k of the Top-K losses, beta of jsd."""
    if cfg["loss"].startswith("topk"):
        return {"k": cfg["k"]}
    return {"beta": cfg["beta"]} if cfg["loss"] == "jsd" else {}
