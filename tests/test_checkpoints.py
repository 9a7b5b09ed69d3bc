"""A checkpoint survives a kill at any point of its write and swap, and a power cut.

checkpoint.save writes ckpt.tmp/, seals it (every file flushed, then manifest.json), then swaps it
in (ckpt → ckpt.old, ckpt.tmp → ckpt, ckpt.old removed). Here the process "dies" before each
file-system operation of a save in turn (and half-way through removing a folder); the next start's
checkpoint.recover must leave exactly one complete ckpt/, at the old step or the new one, that
loads, and the next save must work. A power cut can leave files whose bytes never reached the
disk: recovery trusts only a checkpoint whose manifest matches its files, and never deletes the
last such one; the order of the flushes is checked against the writes themselves.
"""

import os
import shutil

import pytest
import torch

import checkpoint
import common
import data
import models


class Killed(BaseException):
    """The process dying: not an Exception, so nothing on the way catches it."""


def setup(tmp_path):
    tok = models.tiny_tokenizer()
    model = models.build_tiny(seed=3)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = common.cosine_schedule(opt, 10, 0.0)
    stream = common.PromptStream(
        [data.Example(id=str(i), problem=f"What is {i}+1?", answer=str(i + 1)) for i in range(8)], 2
    )
    cfg = {"out": str(tmp_path / "run")}
    os.makedirs(cfg["out"])
    ckpt = dict(model=model, tok=tok, optimizer=opt, scheduler=sched, stream=stream)
    return cfg, ckpt


def train_one_step(model, opt):
    model.train()
    loss = model(torch.tensor([[1, 2, 3, 4]]), labels=torch.tensor([[1, 2, 3, 4]])).loss
    loss.backward()
    opt.step()
    opt.zero_grad()


OPS = [("os", "rename"), ("os", "replace"), ("shutil", "rmtree"), ("torch", "save")]


def count_ops(monkeypatch, kill_at):
    """Wrap the file-system operations save_checkpoint uses; die before call number `kill_at`
    (rmtree: after removing one file of the folder). Returns the call counter."""
    calls = {"n": 0}
    real = {name: getattr({"os": os, "shutil": shutil, "torch": torch}[mod], name) for mod, name in OPS}

    def wrap(name):
        def op(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == kill_at:
                if name == "rmtree" and os.path.isdir(args[0]):
                    first = sorted(os.listdir(args[0]))[0]
                    target = os.path.join(args[0], first)
                    (real["rmtree"] if os.path.isdir(target) else os.remove)(target)  # half removed
                raise Killed(name)
            return real[name](*args, **kwargs)

        return op

    for mod, name in OPS:
        monkeypatch.setattr({"os": os, "shutil": shutil, "torch": torch}[mod], name, wrap(name))
    return calls


def checkpoint_step(cfg):
    state = torch.load(os.path.join(checkpoint.path_of(cfg), "train_state.pt"), weights_only=False)
    return state["step"]


def test_a_kill_at_every_point_of_a_save_leaves_one_loadable_checkpoint(tmp_path, monkeypatch):
    cfg, ckpt = setup(tmp_path)
    checkpoint.save(cfg, step=1, **ckpt)
    with monkeypatch.context() as m:
        total = count_ops(m, kill_at=0)
        checkpoint.save(cfg, step=2, **ckpt)
    n_ops = total["n"]
    assert n_ops >= 6  # model files, optimizer, train state, its rename, the two swaps, the removal
    for kill_at in range(1, n_ops + 1):
        run = tmp_path / f"k{kill_at}"
        cfg, ckpt = setup(run)
        checkpoint.save(cfg, step=1, **ckpt)
        train_one_step(ckpt["model"], ckpt["optimizer"])
        with monkeypatch.context() as m:
            count_ops(m, kill_at)
            with pytest.raises(Killed):
                checkpoint.save(cfg, step=2, **ckpt)
        checkpoint.recover(checkpoint.path_of(cfg))  # what the next start does first
        path = checkpoint.path_of(cfg)
        assert sorted(os.listdir(cfg["out"])) == ["ckpt"], (kill_at, os.listdir(cfg["out"]))
        assert checkpoint_step(cfg) in (1, 2)
        loaded, _ = models.load(path, dtype=torch.float32)
        saved = {n: p for n, p in loaded.named_parameters()}
        if checkpoint_step(cfg) == 2:  # the new checkpoint holds the trained weights
            assert all(torch.equal(saved[n], p.detach()) for n, p in ckpt["model"].named_parameters())
        torch.load(os.path.join(path, "rank0.pt"), weights_only=False)["optimizer"]
        checkpoint.save(cfg, step=3, **ckpt)  # and the run can go on saving
        assert checkpoint_step(cfg) == 3 and sorted(os.listdir(cfg["out"])) == ["ckpt"]


def test_recovery_of_each_leftover_state(tmp_path):
    cfg, ckpt = setup(tmp_path)
    path = checkpoint.path_of(cfg)
    checkpoint.save(cfg, step=1, **ckpt)
    # (a) ckpt/ missing, a complete ckpt.old/ alone: it becomes ckpt/
    os.rename(path, path + ".old")
    checkpoint.recover(path)
    assert checkpoint_step(cfg) == 1 and not os.path.exists(path + ".old")
    # (b) a complete ckpt.tmp/ beside ckpt/: the newer one wins
    checkpoint.save(cfg, step=2, **ckpt)
    shutil.copytree(path, path + ".tmp")
    state = torch.load(os.path.join(path + ".tmp", "train_state.pt"), weights_only=False)
    state["step"] = 5
    torch.save(state, os.path.join(path + ".tmp", "train_state.pt"))
    checkpoint.seal(path + ".tmp", 5)
    checkpoint.recover(path)
    assert checkpoint_step(cfg) == 5 and sorted(os.listdir(cfg["out"])) == ["ckpt"]
    # (c) an incomplete ckpt.tmp/ (no manifest: the write was cut before its end) is dropped
    shutil.copytree(path, path + ".tmp")
    os.remove(os.path.join(path + ".tmp", "manifest.json"))
    checkpoint.recover(path)
    assert checkpoint_step(cfg) == 5 and sorted(os.listdir(cfg["out"])) == ["ckpt"]


def truncate(path, keep=0.5):
    raw = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(raw[: int(len(raw) * keep)])


def test_a_power_cut_copy_with_torn_weights_never_replaces_the_good_checkpoint(tmp_path):
    """What a power cut can leave in ckpt.tmp/: train_state.pt written, weights torn, with or
    without the manifest. The older, complete ckpt/ stays and the torn copy goes."""
    cfg, ckpt = setup(tmp_path)
    path = checkpoint.path_of(cfg)
    checkpoint.save(cfg, step=1, **ckpt)
    for with_manifest in (False, True):
        shutil.copytree(path, path + ".tmp")
        truncate(os.path.join(path + ".tmp", "model.safetensors"))
        if not with_manifest:
            os.remove(os.path.join(path + ".tmp", "manifest.json"))
        assert "model.safetensors" in (checkpoint.problem(path + ".tmp") or "") or not with_manifest
        checkpoint.recover(path)
        assert sorted(os.listdir(cfg["out"])) == ["ckpt"] and checkpoint.problem(path) is None
        models.load(path, dtype=torch.float32)


def test_recovery_never_deletes_the_last_complete_checkpoint(tmp_path):
    cfg, ckpt = setup(tmp_path)
    path = checkpoint.path_of(cfg)
    checkpoint.save(cfg, step=1, **ckpt)
    # ckpt/ torn (a truncated train_state.pt), ckpt.old/ complete: the old one comes back
    shutil.copytree(path, path + ".old")
    truncate(os.path.join(path, "train_state.pt"))
    assert "train_state.pt has" in checkpoint.problem(path)
    checkpoint.recover(path)
    assert checkpoint.problem(path) is None and not os.path.exists(path + ".old")
    assert checkpoint_step(cfg) == 1
    # neither complete: both stay for the user, and the resume says why (test_lost_runs)
    shutil.copytree(path, path + ".old")
    truncate(os.path.join(path, "train_state.pt"))
    os.remove(os.path.join(path + ".old", "manifest.json"))
    checkpoint.recover(path)
    assert sorted(os.listdir(cfg["out"])) == ["ckpt", "ckpt.old"]


def test_every_file_is_flushed_before_the_manifest_and_the_manifest_before_the_swap(tmp_path, monkeypatch):
    """The order a power cut needs: each file of ckpt.tmp/ and the folder are flushed to the disk
    (os.fsync) before manifest.json takes its name, and the manifest before ckpt.tmp/ becomes
    ckpt/. The calls are recorded as they happen."""
    cfg, ckpt = setup(tmp_path)
    checkpoint.save(cfg, step=1, **ckpt)
    events = []
    real_fsync, real_replace, real_rename = os.fsync, os.replace, os.rename

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append(("name", b)), real_replace(a, b))[1])
    monkeypatch.setattr(os, "rename", lambda a, b: (events.append(("name", b)), real_rename(a, b))[1])
    checkpoint.save(cfg, step=2, **ckpt)
    monkeypatch.undo()
    tmp = os.path.realpath(checkpoint.path_of(cfg)) + ".tmp"
    at = {}
    for i, e in enumerate(events):
        at.setdefault(e, i)  # the first time each event happened
    manifest = at[("name", os.path.join(checkpoint.path_of(cfg) + ".tmp", "manifest.json"))]
    files = [n for n in os.listdir(checkpoint.path_of(cfg)) if n != "manifest.json"]
    assert files and all(at[("fsync", os.path.join(tmp, n))] < manifest for n in files), events
    assert at[("fsync", tmp)] < manifest  # the folder's entries too
    swap = at[("name", checkpoint.path_of(cfg))]
    assert at[("fsync", os.path.join(tmp, "manifest.json.part"))] < manifest < swap
