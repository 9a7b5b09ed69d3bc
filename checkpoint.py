"""Checkpoints that a kill or a power cut cannot break.

A checkpoint is the folder ckpt/ of a run folder:

    model weights   transformers format (a LoRA student: its adapters in PEFT's layout, lora.py)
    train_state.pt  step, schedule, data position, RNG
    rank{r}.pt      each process's optimizer shard (and the state of `others`: an EMA teacher)
    manifest.json   written last: the step and every file's size

A checkpoint is *complete* when its manifest says so and every file it lists has the size it
lists (`problem`); the presence of a file says nothing, because after a power cut a file can exist
with its bytes never written. Before the manifest is written, every file and the folder are
flushed to the disk (fsync), so a manifest that survives vouches for the data before it.

`save` writes the new checkpoint into ckpt.tmp/, seals it with its manifest and swaps it in:
ckpt → ckpt.old, ckpt.tmp → ckpt, ckpt.old removed. `recover` brings whatever a kill left of
that sequence to one complete ckpt/, and never deletes the last complete checkpoint.
"""

import json
import os
import random
import shutil

import torch

import common
import distributed
import folders
import lora
import models
from errors import UserError

MANIFEST = folders.MANIFEST
STATE = "train_state.pt"


def path_of(cfg: dict) -> str:
    return os.path.join(cfg["out"], "ckpt")


# -----------------------------------------------------------------------------
# Making the bytes durable: files and folders flushed to the disk before anything points at them


def sync_file(path: str) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def sync_folder(path: str) -> None:
    """Flush a folder's entries (the names of files created, renamed or removed in it)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def seal(folder: str, step: int) -> None:
    """Flush every file under `folder` and the folder itself, then write its manifest (flushed too):
    from then on `problem(folder)` is None until a file changes."""
    files = {}
    for root, _, names in os.walk(folder):
        for name in names:
            if root == folder and name.startswith(MANIFEST):
                continue  # an earlier manifest (the folder is sealed again) is replaced below
            path = os.path.join(root, name)
            sync_file(path)
            files[os.path.relpath(path, folder)] = os.path.getsize(path)
        sync_folder(root)
    folders.write_json(os.path.join(folder, MANIFEST), {"step": step, "files": dict(sorted(files.items()))})
    sync_folder(folder)


def problem(folder: str):
    """Why `folder` is not a complete checkpoint (a short phrase naming the file), or None when it is."""
    path = os.path.join(folder, MANIFEST)
    if not os.path.isfile(path):
        return f"it has no {MANIFEST} (its write was cut before the end)"
    try:
        with open(path) as f:
            manifest = json.load(f)
        files, step = manifest["files"], manifest["step"]
        if not isinstance(files, dict) or not isinstance(step, int) or STATE not in files:
            raise ValueError
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return f"its {MANIFEST} is torn"
    for name, size in files.items():
        there = os.path.join(folder, name)
        if not os.path.isfile(there):
            return f"{name} is missing"
        if os.path.getsize(there) != size:
            return f"{name} has {os.path.getsize(there)} bytes, its manifest says {size}"
    return None


def step_of(folder: str) -> int:
    """The step of a complete checkpoint, from its manifest."""
    with open(os.path.join(folder, MANIFEST)) as f:
        return json.load(f)["step"]


# -----------------------------------------------------------------------------
# Writing one and swapping it in


def save(cfg: dict, model, tok, optimizer, scheduler, stream, step: int, others: dict = None) -> None:
    """ckpt/: the model's full weights in transformers format, or a LoRA student's adapters in
    PEFT's layout (both loadable with models.load), train_state.pt and rank{r}.pt per process (its
    optimizer shard and the state dicts of `others`, models a resume needs too: an EMA teacher). A
    collective under torchrun. Written into ckpt.tmp/, sealed (`seal`), then swapped in by
    `recover`. Weights that are not finite are never written."""
    rank, world = distributed.world()
    path = path_of(cfg)
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
            shutil.rmtree(tmp)  # a write that was cut: never a complete checkpoint (recover ran first)
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
        torch.save(state, os.path.join(tmp, STATE))
        seal(tmp, step)
        recover(path)  # the swap
    distributed.barrier()


def recover(path: str) -> None:
    """Bring ckpt/, ckpt.tmp/ and ckpt.old/ to one complete ckpt/ wherever a kill interrupted
    `save`: a complete ckpt.tmp/ is the newest checkpoint and replaces ckpt/; an incomplete one is
    a write that was cut and is dropped; ckpt.old/ takes ckpt/'s place when only it is complete,
    and is removed once ckpt/ is. When neither is complete both are left as they are (the resume
    that needs them says why)."""
    tmp, old = path + ".tmp", path + ".old"
    parent = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(tmp) and problem(tmp) is None:
        if os.path.isdir(path):
            if os.path.exists(old):
                shutil.rmtree(old)
            os.rename(path, old)
        os.rename(tmp, path)
        sync_folder(parent)
    elif os.path.exists(tmp):
        shutil.rmtree(tmp)
    if os.path.exists(old):
        if problem(path) is None:
            shutil.rmtree(old)
        elif problem(old) is None:
            if os.path.exists(path):
                shutil.rmtree(path)
            os.rename(old, path)
            sync_folder(parent)


def adopt(path: str) -> None:
    """Seal a checkpoint that a version of this project without manifests wrote (train_state.pt
    present and loading, no manifest.json), saying so: its files cannot be checked against sizes
    written at the time, only that they load."""
    if os.path.isfile(os.path.join(path, MANIFEST)) or not os.path.isfile(os.path.join(path, STATE)):
        return
    step = load_state(path, STATE)["step"]
    common.say(
        f"{path}: a checkpoint without a manifest (an older version's); sealed as found, at step {step}"
    )
    seal(path, step)


# -----------------------------------------------------------------------------
# Reading one back


def load_state(path: str, name: str):
    """torch.load of a checkpoint file, a UserError naming it when it does not read."""
    where = os.path.join(path, name)
    try:
        return torch.load(where, weights_only=False)
    except Exception as e:  # a file the manifest vouched for but that does not unpickle: damaged on disk
        raise UserError(
            f"--resume: {where} does not load ({type(e).__name__}: {str(e)[:80]}); the checkpoint is "
            "damaged: start the run again with --restart"
        ) from None


def restore(cfg: dict, optimizer, scheduler, stream, others: dict = None) -> int:
    """The checkpoint's step, with the optimizer, schedule, RNG, prompt stream and `others` (as
    `save`) restored from ckpt/ (the model's weights come with models.load(ckpt/))."""
    rank, world = distributed.world()
    path = path_of(cfg)
    state = load_state(path, STATE)
    if state["world"] != world:
        raise UserError(
            f"{path} was written by {state['world']} processes, this run has {world}: the "
            "optimizer is saved one shard per process; resume with the same number"
        )
    rank_state = load_state(path, f"rank{rank}.pt")
    optimizer.load_state_dict(rank_state["optimizer"])
    for key, m in (others or {}).items():
        m.load_state_dict(rank_state[key])
    scheduler.load_state_dict(state["scheduler"])
    try:
        stream.load_state_dict(state["stream"])
    except ValueError as e:
        raise UserError(f"--resume: {path}: {e}") from None
    random.setstate(state["python_random"])
    torch.random.set_rng_state(state["torch_random"])
    return state["step"]
