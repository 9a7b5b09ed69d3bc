"""The run folder: what a run writes, how it resumes exactly, and what survives a kill.

A run folder (`--out`) holds

    config.json     the resolved config (presets + flags), as the run started
    metrics.jsonl   one JSON line per step (and one per evaluation)
    eval/           per-problem records of every held-out evaluation
    ckpt/           the latest checkpoint: the weights in transformers format (a LoRA student's
                    adapters in PEFT's layout, lora.py), train_state.pt (step, schedule, data
                    position, RNG) and rank{r}.pt (optimizer state)
    summary.json    written last: a run that has it is finished
    .lock           held by the live run (a second run into the folder is refused)

`--out OUT --resume` continues the run from ckpt/ exactly, with the flags of OUT/config.json
(config.parse_config): the same batches, the same sampling noise (seeded by (seed, step)), the
same optimizer state; the metrics after the checkpoint are dropped and written again. A kill at
any point leaves a folder that the next start completes (`recover_checkpoint`); docs/design.md
lists the guarantees. The trainers call these functions around their own loops.

What it simplifies
    * A checkpoint keeps the full weights (float32 for training) and one optimizer shard per
      process: resume with the same number of processes.
    * Only the flags in `RESUME_MAY_CHANGE` may differ on `--resume`; any other flag given with it
      must equal the saved value, and a difference is refused.
"""

import json
import os
import random
import shutil

import torch
import transformers

import common
import config
import distributed
import lora
import models
from errors import UserError

# -----------------------------------------------------------------------------
# Starting a run: the folder's lock, an interrupted swap completed, the resume checks

RESUME_MAY_CHANGE = config.RESUME_MAY_CHANGE  # --resume, --stop-at, --threads, --on-collapse


def ckpt_dir(cfg: dict) -> str:
    return os.path.join(cfg["out"], "ckpt")


def start_run(cfg: dict) -> torch.device:
    """Threads, the device (CUDA when present; under torchrun one per process), the run folder, the global seeds.

    The folder is locked for the life of the process (a second run into it is refused) and a
    checkpoint swap that a kill interrupted is completed first. A fresh run refuses a folder that
    holds a checkpoint; `--resume` needs one, an unfinished run and the config of config.json
    (config.parse_config starts from it; only RESUME_MAY_CHANGE may differ, paths are compared as
    paths). A fresh run writes config.json; returns this process's device."""
    transformers.utils.logging.disable_progress_bar()  # no loading/saving bars between our own lines
    if cfg["threads"]:
        torch.set_num_threads(cfg["threads"])
    # CUDA when present (CUDA_VISIBLE_DEVICES= for the CPU)
    device = distributed.init(models.default_device())
    out, ckpt = cfg["out"], ckpt_dir(cfg)
    if os.path.exists(out) and not os.path.isdir(out):
        raise UserError(f"--out {out}: a file, not a folder; choose another --out")
    if cfg["resume"] and not os.path.isdir(out):
        raise UserError(f"--resume: no run folder {out}; start without --resume, or pass the run's --out")
    if distributed.is_main():
        os.makedirs(out, exist_ok=True)
        common.lock_folder(out)
        recover_checkpoint(ckpt)
    distributed.barrier()
    if cfg["resume"]:
        if not os.path.exists(os.path.join(ckpt, "train_state.pt")):
            raise UserError(
                f"--resume: no checkpoint in {ckpt} (the run stopped before its first one); start "
                "again without --resume"
            )
        if os.path.exists(os.path.join(out, "summary.json")):
            raise UserError(
                f"--resume: the run in {out} is finished (summary.json); to train longer start a new run "
                "from its ckpt/ with --student, or choose another --out"
            )
        changed = config.changed_settings(config.saved_config(out), cfg)
        if changed:
            raise UserError(config.resume_refusal(out, changed))
    elif os.path.exists(ckpt):
        raise UserError(
            f"--out {out} already holds a run with a checkpoint; continue it with `--out {out} --resume` "
            "(its config.json holds its flags), or choose another --out"
        )
    distributed.barrier()  # every process has checked the folder before rank 0 writes to it
    if distributed.is_main():
        os.makedirs(os.path.join(out, "eval"), exist_ok=True)
        if not cfg["resume"]:
            write_json(os.path.join(out, "config.json"), cfg)
    world = distributed.world()[1]
    common.say("config: " + json.dumps(cfg) + (f"; {world} processes" if world > 1 else ""))
    random.seed(cfg["seed"])
    torch.manual_seed(cfg["seed"])
    return device


def write_json(path: str, obj) -> None:
    """Write JSON atomically: a temporary file beside it, then a rename (a kill leaves the old file or the new)."""
    tmp = path + ".part"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


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
# Checkpoints: written beside the previous one, swapped in when complete


def save_checkpoint(
    cfg: dict, model, tok, optimizer, scheduler, stream, step: int, others: dict = None
) -> None:
    """ckpt/: the model's full weights in transformers format, or a LoRA student's adapters in
    PEFT's layout (both loadable with models.load), train_state.pt (step, schedule, data position,
    RNG) and rank{r}.pt per process (its optimizer shard and the state dicts of `others`, models a
    resume needs too: an EMA teacher). A collective under torchrun.

    Written into ckpt.tmp/, train_state.pt last (its presence marks the folder complete), then
    swapped in: ckpt → ckpt.old, ckpt.tmp → ckpt, ckpt.old removed. A kill at any point leaves a
    state that recover_checkpoint completes. Weights that are not finite are never written."""
    rank, world = distributed.world()
    path = ckpt_dir(cfg)
    tmp = path + ".tmp"
    bad = [n for n, p in model.named_parameters() if not torch.isfinite(p.detach()).all()]
    if distributed.all_sum(len(bad)):
        raise common.Diverged(
            f"step {step}: non-finite weights ({bad[:2]}...); the checkpoint was not written: ckpt/ holds "
            f"the last good one; lower --lr and start again, or --resume to retry"
        )
    # every process takes part: the adapters alone (PEFT's layout), or the whole model's weights
    adapters = lora.tensors(model) if lora.is_adapted(model) else None
    full = distributed.full_state_dict(model) if world > 1 and adapters is None else None
    if rank == 0:
        if os.path.exists(tmp):
            shutil.rmtree(tmp)  # a write that was killed half-way
        if adapters is not None:
            lora.save(tmp, adapters, lora.peft_config(model, models.saved_name(cfg["student"])))
        else:
            models.save(model, tok, tmp, state_dict=full)
    distributed.barrier()
    torch.save(
        {"optimizer": optimizer.state_dict(), **{k: m.state_dict() for k, m in (others or {}).items()}},
        os.path.join(tmp, f"rank{rank}.pt"),
    )
    distributed.barrier()
    if rank == 0:
        state = {
            "step": step,
            "scheduler": scheduler.state_dict(),
            "stream": stream.state_dict(),
            "python_random": random.getstate(),
            "torch_random": torch.random.get_rng_state(),
            "world": world,
        }
        torch.save(state, os.path.join(tmp, "train_state.pt.part"))
        os.replace(os.path.join(tmp, "train_state.pt.part"), os.path.join(tmp, "train_state.pt"))
        recover_checkpoint(path)  # the swap
    distributed.barrier()


def _complete(folder: str) -> bool:
    return os.path.isfile(os.path.join(folder, "train_state.pt"))


def recover_checkpoint(path: str) -> None:
    """Bring ckpt/, ckpt.tmp/ and ckpt.old/ to one complete ckpt/ (or none), whatever step of
    save_checkpoint's swap a kill interrupted: a complete ckpt.tmp/ is the newest checkpoint and
    replaces ckpt/; an incomplete one is a write that was cut and is dropped; ckpt.old/ is kept
    only while it is the sole complete checkpoint."""
    tmp, old = path + ".tmp", path + ".old"
    if os.path.isdir(tmp) and _complete(tmp):
        if os.path.isdir(path):
            if os.path.exists(old):
                shutil.rmtree(old)
            os.rename(path, old)
        os.rename(tmp, path)
    elif os.path.exists(tmp):
        shutil.rmtree(tmp)
    if os.path.exists(old):
        if not _complete(path) and _complete(old):
            if os.path.exists(path):
                shutil.rmtree(path)
            os.rename(old, path)
        else:
            shutil.rmtree(old)


def resume(cfg: dict, optimizer, scheduler, stream, others: dict = None) -> int:
    """The first step of the run: 0 for a fresh run; on --resume the checkpoint's step, with the
    optimizer, schedule, RNG, prompt stream and `others` (as save_checkpoint) restored from ckpt/
    (the model's weights come with models.load(ckpt/)). Opens the metrics log either way."""
    start = 0
    if cfg["resume"]:
        rank, world = distributed.world()
        path = ckpt_dir(cfg)
        state = torch.load(os.path.join(path, "train_state.pt"), weights_only=False)
        if state["world"] != world:
            raise UserError(
                f"{path} was written by {state['world']} processes, this run has {world}: the "
                "optimizer is saved one shard per process; resume with the same number"
            )
        if state["step"] > cfg["steps"]:
            raise UserError(
                f"--steps {cfg['steps']}: the checkpoint in {path} is at step {state['step']}; resume "
                "with the run's --steps"
            )
        rank_state = torch.load(os.path.join(path, f"rank{rank}.pt"), weights_only=False)
        optimizer.load_state_dict(rank_state["optimizer"])
        for key, m in (others or {}).items():
            m.load_state_dict(rank_state[key])
        scheduler.load_state_dict(state["scheduler"])
        stream.load_state_dict(state["stream"])
        random.setstate(state["python_random"])
        torch.random.set_rng_state(state["torch_random"])
        start = state["step"]
        common.say(f"resumed from {path} at step {start}")
    open_log(cfg, start)
    return start


def end_step(cfg: dict, done: int, m: dict, bar, ckpt: dict, shown: tuple = (("loss", "loss"),)) -> bool:
    """After training step `done`: log its record `m`, move the progress bar (its postfix: the
    monitors `shown`, common.postfix), save a checkpoint when one is due (`ckpt`: save_checkpoint's
    model, tok, optimizer, scheduler, stream and others). True when the run stops here (--stop-at)."""
    log(cfg, {"step": done, **m})
    bar.update()
    bar.set_postfix_str(common.postfix(m, shown))
    if "eval" in m:
        common.say(f"step {done}: student acc {m['eval']['student']['acc/pass@1']:.3f}")
    if checkpoint_due(cfg, done):
        save_checkpoint(cfg, step=done, **ckpt)
    if done == cfg["stop_at"] and done < cfg["steps"]:
        bar.close()
        common.say(f"stopped after step {done} (--stop-at); continue with --out {cfg['out']} --resume")
        common.unlock_folder(cfg["out"])
        return True
    return False


def end_run(cfg: dict, final: dict, wall_s: float, ckpt: dict, loss: str) -> dict:
    """After the last step: log the final evaluation, save the last checkpoint, write summary.json
    (the student before and after, and the teacher at step 0 when there is one; `loss` names what
    trained); returns it."""
    log(cfg, {"step": cfg["steps"], "eval": {"student": final}})
    save_checkpoint(cfg, step=cfg["steps"], **ckpt)
    summary = run_summary(cfg, final, wall_s, loss)
    write_summary(cfg, summary)
    common.unlock_folder(cfg["out"])
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
                if rec["step"] <= start:
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


def read_log(folder: str) -> tuple:
    """(training-step records, [(step, held-out student accuracy)]) of a run folder's metrics.jsonl."""
    path = os.path.join(folder, "metrics.jsonl")
    if not os.path.exists(path):
        raise UserError(f"{path} not found: pass a run folder written by one of the train_*.py scripts")
    steps, evals = [], []
    with open(path) as f:
        for line in f:
            rec = json.loads(line)
            if "student" in rec.get("eval", {}):
                evals.append((rec["step"], rec["eval"]["student"]["acc/pass@1"]))
            if "loss" in rec:
                steps.append(rec)
    return steps, evals


# -----------------------------------------------------------------------------
# Summaries


def write_summary(cfg: dict, summary: dict) -> None:
    """summary.json, written last: the folder then holds a finished run (rank 0)."""
    if distributed.is_main():
        write_json(os.path.join(cfg["out"], "summary.json"), summary)


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
    with open(metrics_path(cfg)) as f:
        first = json.loads(f.readline())["eval"]
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
