"""The run folder: what a run writes, what it reads, how it resumes exactly.

A run folder (`--out`) holds

    run.json        written first: the script that owns the folder (folders.py) and fingerprints
                    of what the run reads (the student's and teacher's weights, the training
                    data, the held-out set)
    config.json     the resolved config (presets + flags), as the run started
    metrics.jsonl   one JSON line per step (and one per evaluation)
    eval/           per-problem records of every held-out evaluation
    ckpt/           the latest complete checkpoint (checkpoint.py)
    summary.json    written last: a run that has it is finished
    .lock           held by the live run (a second run into the folder is refused)

`--out OUT --resume` continues the run from ckpt/ exactly, with the flags of OUT/config.json
(config.parse_config): the same batches, the same sampling noise (seeded by (seed, step)), the
same optimizer state; the metrics after the checkpoint are dropped and written again. It is
refused, with what to do, when anything the run reads changed since it started (`fingerprints`),
when the checkpoint is not complete, or when the step-0 evaluation its summary needs is lost;
`--restart` starts such a run over in the same folder. A kill at any point leaves a folder that
the next start completes (checkpoint.recover); docs/design.md lists the guarantees. The trainers
call these functions around their own loops.

What it simplifies
    * A checkpoint keeps the full weights (float32 for training) and one optimizer shard per
      process: resume with the same number of processes.
    * Only the flags in `RESUME_MAY_CHANGE` may differ on `--resume`; any other flag given with it
      must equal the saved value, and a difference is refused.
    * A model's fingerprint reads each file whole up to 64 MiB and, past that, its size and 256
      blocks spread over it: a retrained or replaced model is told apart; a change of a few bytes
      inside a large file between those blocks is not. A hub id counts by its name.
"""

import hashlib
import json
import os
import random

import torch
import transformers

import checkpoint
import common
import config
import distributed
import folders
import lora
import models
from errors import UserError

# -----------------------------------------------------------------------------
# What a run reads: fingerprints of its models and data, recorded in run.json


WHOLE_BYTES = 64 << 20  # a model file up to this size is hashed whole; past it, sampled
BLOCKS, BLOCK_BYTES = 256, 64 << 10


def file_fingerprint(path: str, h) -> None:
    """Feed `path`'s size and content into the hash `h`: all of it up to WHOLE_BYTES, else BLOCKS
    blocks spread evenly from its start to its end."""
    size = os.path.getsize(path)
    h.update(f"{size}\0".encode())
    with open(path, "rb") as f:
        if size <= WHOLE_BYTES:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
            return
        for i in range(BLOCKS):
            f.seek((size - BLOCK_BYTES) * i // (BLOCKS - 1))
            h.update(f.read(BLOCK_BYTES))


def model_fingerprint(name: str) -> str:
    """A short hash of a model folder's files (names, sizes, contents; a folder of adapters
    includes its base), or `hub:ID` for a hub id."""
    path = models.resolve(name)
    if not os.path.isdir(path):
        return f"hub:{name}"
    h = hashlib.sha256()
    for entry in sorted(os.listdir(path)):
        f = os.path.join(path, entry)
        if os.path.isfile(f):
            h.update(entry.encode() + b"\0")
            file_fingerprint(f, h)
    if lora.is_adapter_folder(path):
        with open(os.path.join(path, lora.CONFIG_FILE)) as f:
            h.update(model_fingerprint(json.load(f).get("base_model_name_or_path", "")).encode())
    return h.hexdigest()[:16]


def fingerprints(models_read: dict, data_read: dict) -> dict:
    """what -> fingerprint: each model (`models_read`: what -> its --flag's name or path) and each
    list of examples (`data_read`: what -> the examples, common.fingerprint)."""
    out = {what: model_fingerprint(name) for what, name in models_read.items()}
    out.update({what: common.fingerprint(examples) for what, examples in data_read.items()})
    return out


# -----------------------------------------------------------------------------
# Starting a run: the folder claimed or checked, an interrupted checkpoint swap completed

RESUME_MAY_CHANGE = config.RESUME_MAY_CHANGE  # --resume, --restart, --stop-at, --threads, --on-collapse
WRITES = (  # what a trainer writes into its folder (folders.check: anything else is not its own)
    "config.json*",
    "metrics.jsonl*",
    "eval",
    "ckpt",
    "ckpt.*",
    "summary.json*",
    "final",
    "snapshots",
    "traces.jsonl*",
)


def ckpt_dir(cfg: dict) -> str:
    return checkpoint.path_of(cfg)


def start_run(
    cfg: dict, script: str, models_read: dict, data_read: dict, before_in_log: bool = True
) -> torch.device:
    """Threads, the device (CUDA when present; under torchrun one per process), the run folder, the global seeds.

    A fresh run claims --out for `script` (folders.claim: only a new or empty folder, or its own
    unfinished run, which --restart may also clear when it has a checkpoint) and records in run.json
    what it reads: `models_read` (what -> model name or path) and `data_read` (what -> examples).
    `--resume` needs the folder's unfinished run of `script` with a complete checkpoint, the
    step-0 evaluation in metrics.jsonl when the summary reads it from there (`before_in_log`:
    run_summary), the same config (only RESUME_MAY_CHANGE may differ) and the
    same inputs (their fingerprints); each failure is refused with what to do. Returns this
    process's device."""
    transformers.utils.logging.disable_progress_bar()  # no loading/saving bars between our own lines
    if cfg["threads"]:
        torch.set_num_threads(cfg["threads"])
    # CUDA when present (CUDA_VISIBLE_DEVICES= for the CPU)
    device = distributed.init(models.default_device())
    out = cfg["out"]
    inputs = fingerprints(models_read, data_read)
    if cfg["resume"]:
        if distributed.is_main():
            check_resume(cfg, script, inputs, before_in_log)
    elif distributed.is_main():
        folders.claim(out, script, WRITES, {"inputs": inputs}, restart=cfg["restart"], say=common.say)
    distributed.barrier()  # every process has checked the folder before rank 0 writes to it
    if distributed.is_main():
        os.makedirs(os.path.join(out, "eval"), exist_ok=True)
        if not cfg["resume"]:
            folders.write_json(os.path.join(out, "config.json"), cfg)
    world = distributed.world()[1]
    common.say("config: " + json.dumps(cfg) + (f"; {world} processes" if world > 1 else ""))
    random.seed(cfg["seed"])
    torch.manual_seed(cfg["seed"])
    return device


def check_resume(cfg: dict, script: str, inputs: dict, before_in_log: bool) -> None:
    """The checks of `--out OUT --resume` (start_run), in the order a user fixes them; the folder
    locked first, its checkpoint swap completed."""
    out, ckpt = cfg["out"], ckpt_dir(cfg)
    again = f"start it over with `--out {out} --restart`, or choose another --out"
    if os.path.exists(out) and not os.path.isdir(out):
        raise UserError(f"--out {out}: a file, not a folder; choose another --out")
    if not os.path.isdir(out):
        raise UserError(f"--resume: no run folder {out}; start without --resume, or pass the run's --out")
    folders.lock(out)
    rec = folders.owner(out)
    if rec is not None and rec["script"] != script:
        raise UserError(f"--resume: {out} holds a run of {rec['script']}; resume it with that script")
    if os.path.exists(os.path.join(out, "summary.json")):
        raise UserError(
            f"--resume: the run in {out} is finished (summary.json); to train longer start a new run "
            "from its ckpt/ with --student, or choose another --out"
        )
    checkpoint.recover(ckpt)
    if rec is None:
        checkpoint.adopt(ckpt)  # a run of an older version: its checkpoint had no manifest
    if not any(os.path.exists(ckpt + end) for end in ("", ".old")):
        raise UserError(
            f"--resume: no checkpoint in {ckpt} (the run stopped before its first one); start "
            "again without --resume"
        )
    bad = checkpoint.problem(ckpt)
    if bad:
        raise UserError(f"--resume: {ckpt} is not a complete checkpoint: {bad}; {again}")
    step = checkpoint.step_of(ckpt)
    if cfg["stop_at"] and cfg["stop_at"] <= step:
        raise UserError(
            f"--stop-at {cfg['stop_at']}: the checkpoint in {ckpt} is at step {step} already; pass a "
            "later step, or leave --stop-at out"
        )
    if step > cfg["steps"]:
        raise UserError(
            f"--steps {cfg['steps']}: the checkpoint in {ckpt} is at step {step}; resume with the run's --steps"
        )
    saved = config.saved_config(out)
    changed = config.changed_settings(saved, {k: v for k, v in cfg.items() if k != "out"})
    if changed:
        raise UserError(config.resume_refusal(out, changed))
    if os.path.exists(metrics_path(cfg)):
        try:
            read_records(metrics_path(cfg))  # a kill tears only the last line, which open_log drops
        except UserError as e:
            raise UserError(
                f"--resume: {e}: a damaged line inside the log; delete that line to continue without "
                f"its record, or {again}"
            ) from None
    if before_in_log and step_zero(out) is None:
        raise UserError(
            f"--resume: {metrics_path(cfg)} has lost the step-0 evaluation that the run's summary "
            f"reports as 'before'; {again}"
        )
    if rec is None:  # a folder from before run.json: nothing to compare with, recorded from now on
        common.say(f"{out} has no run.json: the inputs it started with are unknown; recording them now")
        folders.write_json(os.path.join(out, folders.OWNER), {"script": script, "inputs": inputs})
    else:
        moved = [w for w in inputs if w in rec.get("inputs", {}) and rec["inputs"][w] != inputs[w]]
        if moved:
            raise UserError(
                f"--resume: {', '.join(moved)} changed since the run in {out} started (fingerprints in "
                f"{folders.OWNER}); restore the original, or {again}"
            )
    if saved.get("out") and os.path.realpath(saved["out"]) != os.path.realpath(out):  # the folder moved
        common.say(f"the run was started in {saved['out']}; it continues in {out}")
        folders.write_json(os.path.join(out, "config.json"), dict(saved, out=out))


def student_source(cfg: dict) -> str:
    """Where the student's weights come from: ckpt/ on --resume (when it is there), else --student."""
    ckpt = ckpt_dir(cfg)
    return ckpt if cfg["resume"] and os.path.isfile(os.path.join(ckpt, "config.json")) else cfg["student"]


def load_student(cfg: dict, device, grad_checkpointing: bool = False) -> tuple:
    """(student, tokenizer) for training: float32 weights (Adam updates of lr 2e-6 vanish when
    rounded into bf16 weights; bf16 compute comes from autocast), from ckpt/ on --resume, with
    gradient checkpointing when asked for. With --lora-rank R the weights are --student's, frozen,
    with adapters (lora.attach; on --resume the adapters of ckpt/)."""
    adapters = cfg.get("lora_rank")
    source = ckpt_dir(cfg) if cfg["resume"] and not adapters else cfg["student"]
    student, tok = models.load(source, device=device, dtype=torch.float32)
    if adapters:
        lora.attach(student, cfg["lora_rank"], cfg["lora_alpha"], cfg["lora_targets"], seed=cfg["seed"])
        if cfg["resume"]:
            lora.load_tensors(student, lora.read(ckpt_dir(cfg))[1], where=ckpt_dir(cfg))
        total = sum(p.numel() for p in student.parameters())
        common.say(
            f"LoRA rank {cfg['lora_rank']}, α {cfg['lora_alpha']:g} on {','.join(cfg['lora_targets'])}: "
            f"{lora.trainable(student):,} trainable parameters of {total:,}"
        )
    if grad_checkpointing:
        enable = (
            getattr(student, "activation_checkpointing_enable", None) or student.gradient_checkpointing_enable
        )
        enable()  # recompute each layer's activations in backward (the name changed in transformers 5.x)
        student.config.use_cache = False
    return student, tok


# -----------------------------------------------------------------------------
# Resuming: the checkpoint's state restored, the metrics log reopened at its step


def resume(cfg: dict, optimizer, scheduler, stream, others: dict = None) -> int:
    """The first step of the run: 0 for a fresh run; on --resume the checkpoint's step, with the
    optimizer, schedule, RNG, prompt stream and `others` restored from ckpt/ (checkpoint.restore;
    the model's weights come with models.load(ckpt/)). Opens the metrics log either way."""
    start = 0
    if cfg["resume"]:
        start = checkpoint.restore(cfg, optimizer, scheduler, stream, others)
        common.say(f"resumed from {ckpt_dir(cfg)} at step {start}")
    open_log(cfg, start)
    return start


def end_step(cfg: dict, done: int, m: dict, bar, ckpt: dict, shown: tuple = (("loss", "loss"),)) -> bool:
    """After training step `done`: log its record `m`, move the progress bar (its postfix: the
    monitors `shown`, common.postfix), save a checkpoint when one is due (`ckpt`: checkpoint.save's
    model, tok, optimizer, scheduler, stream and others). True when the run stops here (--stop-at)."""
    log(cfg, {"step": done, **m})
    bar.update()
    bar.set_postfix_str(common.postfix(m, shown))
    if "eval" in m:
        common.say(f"step {done}: student acc {m['eval']['student']['acc/pass@1']:.3f}")
    if checkpoint_due(cfg, done):
        checkpoint.save(cfg, step=done, **ckpt)
    if done == cfg["stop_at"] and done < cfg["steps"]:
        bar.close()
        common.say(f"stopped after step {done} (--stop-at); continue with --out {cfg['out']} --resume")
        folders.unlock(cfg["out"])
        return True
    return False


def end_run(cfg: dict, final: dict, wall_s: float, ckpt: dict, loss: str) -> dict:
    """After the last step: log the final evaluation, save the last checkpoint, write summary.json
    (the student before and after, and the teacher at step 0 when there is one; `loss` names what
    trained); returns it."""
    log(cfg, {"step": cfg["steps"], "eval": {"student": final}})
    checkpoint.save(cfg, step=cfg["steps"], **ckpt)
    summary = run_summary(cfg, final, wall_s, loss)
    write_summary(cfg, summary)
    folders.unlock(cfg["out"])
    return summary


def checkpoint_due(cfg: dict, done: int) -> bool:
    """Whether step `done` ends with a checkpoint: every ckpt_every steps and at --stop-at (the
    final one is written by the run's end)."""
    if done >= cfg["steps"]:
        return False
    return bool(cfg["ckpt_every"] and done % cfg["ckpt_every"] == 0) or done == cfg["stop_at"]


def eval_due(cfg: dict, done: int) -> bool:
    """Whether step `done` is followed by a held-out evaluation (the final one is the run's end)."""
    return bool(cfg["eval_every"]) and done % cfg["eval_every"] == 0 and done < cfg["steps"]


# -----------------------------------------------------------------------------
# The metrics log (JSONL)


def metrics_path(cfg: dict) -> str:
    return os.path.join(cfg["out"], "metrics.jsonl")


def open_log(cfg: dict, start: int) -> None:
    """metrics.jsonl for a run that starts at step `start`: a fresh run starts it empty; a resumed
    one keeps the lines up to its checkpoint's step (a torn last line included) and rewrites the rest."""
    path = metrics_path(cfg)
    if not distributed.is_main():
        return
    kept, torn = [], 0
    if start > 0 and os.path.exists(path):
        with open(path, "rb") as f:
            for raw in f:
                try:
                    rec = json.loads(raw)
                    if not isinstance(rec, dict) or not isinstance(rec.get("step"), int):
                        raise ValueError
                except ValueError:  # a line a killed write (or a full disk) left half-written
                    torn += 1
                    continue
                # the steps up to the checkpoint's; a run whose last checkpoint is its final one
                # (killed before summary.json) evaluates again, so its final evaluation goes
                final_eval = rec["step"] == start == cfg["steps"] and "loss" not in rec
                if rec["step"] <= start and not final_eval:
                    kept.append(json.dumps(rec) + "\n")
    if torn:
        common.say(f"{path}: dropped {torn} torn line(s)")
    tmp = path + ".part"
    with open(tmp, "w") as f:
        f.writelines(kept)
    os.replace(tmp, path)


def log(cfg: dict, record: dict) -> None:
    """Append one record to metrics.jsonl (rank 0); top-level floats rounded to 6 decimals."""
    if distributed.is_main():
        rec = {k: round(v, 6) if isinstance(v, float) else v for k, v in record.items()}
        with open(metrics_path(cfg), "a") as f:
            f.write(json.dumps(rec) + "\n")


def read_records(path: str) -> list:
    """The records of a metrics.jsonl, a torn last line (a write a kill cut) dropped; a UserError
    naming the file and line for any other line that is not a record of one step."""
    if not os.path.exists(path):
        raise UserError(f"{path} not found: pass a run folder written by one of the train_*.py scripts")
    with open(path, "rb") as f:
        lines = f.read().split(b"\n")
    records = []
    for i, raw in enumerate(lines):
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw)
            if not isinstance(rec, dict) or not isinstance(rec.get("step"), int):
                raise ValueError
        except ValueError:
            if i >= len(lines) - 2 and not raw.endswith(b"}"):
                continue  # the last line, cut by a kill mid-write
            raise UserError(f"{path}, line {i + 1}: not a record of one step ({raw[:60]!r})") from None
        records.append(rec)
    return records


def read_log(folder: str) -> tuple:
    """(training-step records, [(step, held-out student accuracy)]) of a run folder's metrics.jsonl."""
    path = os.path.join(folder, "metrics.jsonl")
    steps, evals = [], []
    for rec in read_records(path):
        if "student" in rec.get("eval", {}):
            evals.append((rec["step"], rec["eval"]["student"]["acc/pass@1"]))
        if "loss" in rec:
            steps.append(rec)
    return steps, evals


def step_zero(out: str):
    """The step-0 evaluation record of the run in `out` (the 'before' of its summary), or None."""
    path = os.path.join(out, "metrics.jsonl")
    if not os.path.isfile(path):
        return None
    with open(path, "rb") as f:
        for raw in f:
            try:
                rec = json.loads(raw)
            except ValueError:  # a torn line: open_log drops it on resume
                continue
            if isinstance(rec, dict) and rec.get("step") == 0 and "student" in rec.get("eval", {}):
                return rec["eval"]
    return None


# -----------------------------------------------------------------------------
# Summaries


def write_summary(cfg: dict, summary: dict) -> None:
    """summary.json, written last: the folder then holds a finished run (rank 0)."""
    if distributed.is_main():
        folders.write_json(os.path.join(cfg["out"], "summary.json"), summary)


def read_json(folder: str, name: str = "summary.json") -> dict:
    path = os.path.join(folder, name)
    if not os.path.exists(path):
        raise UserError(f"{path} not found: pass a finished run folder")
    with open(path) as f:
        return json.load(f)


def run_summary(cfg: dict, final: dict, wall_s: float, loss: str) -> dict:
    """summary.json of a run that evaluates at step 0 and at the end: the student before (and the
    teacher, when there is one) from metrics.jsonl's step-0 record, the student after, and `loss`
    (what trained: the distillation loss's name, or the algorithm's). Rank 0."""
    if not distributed.is_main():
        return {}
    first = step_zero(cfg["out"])
    summary = {
        "student_before": first["student"],
        "student_after": final,
        "steps": cfg["steps"],
        "loss": loss,
        "wall_s": round(wall_s, 1),
    }
    if "teacher" in first:
        summary["teacher"] = first["teacher"]
    return summary
