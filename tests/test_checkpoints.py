"""A checkpoint survives a kill at any point of its write and swap.

run_folder.save_checkpoint writes ckpt.tmp/, then swaps it in (ckpt → ckpt.old, ckpt.tmp → ckpt,
ckpt.old removed). Here the process "dies" before each file-system operation of a save in turn
(and half-way through removing a folder); the next start's recover_checkpoint must leave exactly
one complete ckpt/, at the old step or the new one, that loads, and the next save must work.
"""

import os
import shutil

import pytest
import torch

import common
import data
import models
import run_folder


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
    state = torch.load(os.path.join(run_folder.ckpt_dir(cfg), "train_state.pt"), weights_only=False)
    return state["step"]


def test_a_kill_at_every_point_of_a_save_leaves_one_loadable_checkpoint(tmp_path, monkeypatch):
    cfg, ckpt = setup(tmp_path)
    run_folder.save_checkpoint(cfg, step=1, **ckpt)
    with monkeypatch.context() as m:
        total = count_ops(m, kill_at=0)
        run_folder.save_checkpoint(cfg, step=2, **ckpt)
    n_ops = total["n"]
    assert n_ops >= 6  # model files, optimizer, train state, its rename, the two swaps, the removal
    for kill_at in range(1, n_ops + 1):
        run = tmp_path / f"k{kill_at}"
        cfg, ckpt = setup(run)
        run_folder.save_checkpoint(cfg, step=1, **ckpt)
        train_one_step(ckpt["model"], ckpt["optimizer"])
        with monkeypatch.context() as m:
            count_ops(m, kill_at)
            with pytest.raises(Killed):
                run_folder.save_checkpoint(cfg, step=2, **ckpt)
        run_folder.recover_checkpoint(run_folder.ckpt_dir(cfg))  # what the next start does first
        path = run_folder.ckpt_dir(cfg)
        assert sorted(os.listdir(cfg["out"])) == ["ckpt"], (kill_at, os.listdir(cfg["out"]))
        assert checkpoint_step(cfg) in (1, 2)
        loaded, _ = models.load(path, dtype=torch.float32)
        saved = {n: p for n, p in loaded.named_parameters()}
        if checkpoint_step(cfg) == 2:  # the new checkpoint holds the trained weights
            assert all(torch.equal(saved[n], p.detach()) for n, p in ckpt["model"].named_parameters())
        torch.load(os.path.join(path, "rank0.pt"), weights_only=False)["optimizer"]
        run_folder.save_checkpoint(cfg, step=3, **ckpt)  # and the run can go on saving
        assert checkpoint_step(cfg) == 3 and sorted(os.listdir(cfg["out"])) == ["ckpt"]


def test_recovery_of_each_leftover_state(tmp_path):
    cfg, ckpt = setup(tmp_path)
    path = run_folder.ckpt_dir(cfg)
    run_folder.save_checkpoint(cfg, step=1, **ckpt)
    # (a) ckpt/ missing, a complete ckpt.old/ alone: it becomes ckpt/
    os.rename(path, path + ".old")
    run_folder.recover_checkpoint(path)
    assert checkpoint_step(cfg) == 1 and not os.path.exists(path + ".old")
    # (b) a complete ckpt.tmp/ beside ckpt/: the newer one wins
    run_folder.save_checkpoint(cfg, step=2, **ckpt)
    shutil.copytree(path, path + ".tmp")
    state = torch.load(os.path.join(path + ".tmp", "train_state.pt"), weights_only=False)
    state["step"] = 5
    torch.save(state, os.path.join(path + ".tmp", "train_state.pt"))
    run_folder.recover_checkpoint(path)
    assert checkpoint_step(cfg) == 5 and sorted(os.listdir(cfg["out"])) == ["ckpt"]
    # (c) an incomplete ckpt.tmp/ (no train_state.pt) is a cut write: dropped
    shutil.copytree(path, path + ".tmp")
    os.remove(os.path.join(path + ".tmp", "train_state.pt"))
    run_folder.recover_checkpoint(path)
    assert checkpoint_step(cfg) == 5 and sorted(os.listdir(cfg["out"])) == ["ckpt"]
