"""Faults during or between real tiny runs lose nothing (a few steps each, CPU).

A non-finite gradient stops the run with the last good checkpoint; `--out DIR --resume` alone
continues a killed run with the flags of its config.json and lands on the uninterrupted run's
weights; a flag given with --resume that is not the run's, `--resume` with fewer steps than the
checkpoint, a folder another live run holds, a second evaluation or a probe into an evaluation's
folder and a checkpoint missing a tensor are refused by name; a torn metrics line is dropped on
resume; and config.json is never left half-written. The bad inputs that are refused
before a run starts are the table of tests/test_bad_inputs.py, whose tiny models and data files
these tests share.
"""

import builtins
import fcntl
import io
import json
import os

import pytest
import torch
from test_bad_inputs import case_placeholders, error_message, forbid_model_loads, make_shared, without
from test_opd import kill_run_at_step_3, same_final_weights
from test_sft import small_run

import errors
import eval_cli
import models
import probes
import train_grpo
import train_opd
import train_opsd
import train_sft
from tiny_world import build


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    return make_shared(tmp_path_factory.mktemp("shared"))


RUN = [
    "--student",
    "{student}",
    "--teacher",
    "{teacher}",
    "--data",
    "{train}",
    "--eval-data",
    "{eval}",
    "--steps",
    "4",
    "--batch-size",
    "4",
    "--micro-batch",
    "4",
    "--max-new-tokens",
    "8",
    "--eval-n",
    "4",
    "--ckpt-every",
    "2",
    "--lr",
    "3e-3",
    "--threads",
    "1",
    "--out",
    "{out}",
]


def run_args(shared, tmp_path, *more):
    P = case_placeholders(shared, tmp_path)
    return [a.format(**P) for a in RUN] + list(more), tmp_path / "out"


def refused(main, argv, capsys) -> str:
    """Run main through errors.run; assert exit 2 without a traceback; return the error message."""
    with pytest.raises(SystemExit) as exit_:
        errors.run(main, argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2, f"exit code {exit_.value.code!r}; stderr:\n{err[-2000:]}"
    assert "Traceback" not in err
    message = error_message(err)
    assert message and len(message.splitlines()) <= 2, err[-2000:]
    return message


def ckpt_step(out) -> int:
    return torch.load(out / "ckpt" / "train_state.pt", weights_only=False)["step"]


def training_steps(out) -> list:
    return [json.loads(line)["step"] for line in open(out / "metrics.jsonl") if '"loss"' in line]


def folder_snapshot(out) -> dict:
    """Every file of the run folder and its bytes (the lock file aside)."""
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


def test_non_finite_gradient_stops_with_the_last_good_checkpoint(shared, tmp_path, capsys):
    argv, out = run_args(shared, tmp_path, "--lr", "1e20", "--ckpt-every", "1")
    message = refused(train_opd.main, argv, capsys)
    assert "non-finite" in message
    assert (out / "ckpt").is_dir(), "no checkpoint left: the steps before the fault are lost"
    model, _ = models.load(str(out / "ckpt"), device="cpu", dtype=torch.float32)
    for name, p in model.named_parameters():
        assert torch.isfinite(p).all(), f"the checkpoint holds non-finite weights in {name}"
    assert not (out / "summary.json").exists()


def test_resume_with_fewer_steps_than_the_checkpoint_is_refused(shared, tmp_path, capsys):
    argv, out = run_args(shared, tmp_path)
    train_opd.main(argv + ["--stop-at", "3"])
    before = folder_snapshot(out)
    message = refused(train_opd.main, argv + ["--resume", "--steps", "2"], capsys)
    assert "--steps" in message and "2" in message
    assert folder_snapshot(out) == before, "the refused resume changed the run folder"
    train_opd.main(argv + ["--resume"])  # the run still continues to its end
    assert training_steps(out) == [1, 2, 3, 4] and (out / "summary.json").exists()


def test_a_run_folder_held_by_another_run_is_refused(shared, tmp_path, capsys):
    argv, out = run_args(shared, tmp_path)
    train_opd.main(argv + ["--stop-at", "2"])
    before = folder_snapshot(out)
    other = open(out / ".lock", "w")  # the other, live run
    fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        message = refused(train_opd.main, argv + ["--resume"], capsys)
        assert str(out) in message
        assert folder_snapshot(out) == before, "the refused run wrote into a folder another run holds"
        # a fresh run into an (otherwise empty) folder that another run holds
        held = tmp_path / "held"
        held.mkdir()
        other2 = open(held / ".lock", "w")
        fcntl.flock(other2, fcntl.LOCK_EX | fcntl.LOCK_NB)
        message = refused(train_opd.main, without(argv, "--out") + ["--out", str(held)], capsys)
        assert str(held) in message
        assert sorted(p.name for p in held.iterdir()) == [".lock"]
        other2.close()
    finally:
        other.close()
    # the lock file the other run leaves behind blocks nothing once that run is gone
    train_opd.main(argv + ["--resume"])
    assert training_steps(out) == [1, 2, 3, 4]


def test_a_torn_last_metrics_line_is_dropped_on_resume(shared, tmp_path):
    argv, out = run_args(shared, tmp_path)
    train_opd.main(argv + ["--stop-at", "2"])
    with open(out / "metrics.jsonl", "a") as f:
        f.write('{"step": 3, "loss": 0.25, "kl/fu')  # a write killed half-way
    train_opd.main(argv + ["--resume"])
    records = [json.loads(line) for line in open(out / "metrics.jsonl")]  # every line is valid JSON
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3, 4]
    assert [r["step"] for r in records if "eval" in r] == [0, 4]


def test_a_second_eval_into_the_same_out_is_refused(shared, tmp_path, capsys):
    out = tmp_path / "ev"
    argv = [
        "--model",
        shared["student"],
        "--bench",
        "synthetic",
        "--synthetic-n",
        "4",
        "--max-new-tokens",
        "8",
        "--batch-size",
        "4",
        "--threads",
        "1",
        "--quiet",
        "--out",
        str(out),
    ]
    eval_cli.main(argv)
    before = folder_snapshot(out)
    assert "summary.json" in before
    message = refused(eval_cli.main, argv + ["--seed", "1"], capsys)
    assert str(out) in message
    assert folder_snapshot(out) == before, "the second evaluation overwrote the first"
    message = refused(probes.main, argv + ["--probe-teacher", shared["teacher"]], capsys)
    assert str(out) in message and "eval_math.py" in message
    assert folder_snapshot(out) == before, "the probe wrote into the evaluation's folder"


def test_a_checkpoint_missing_a_tensor_is_refused_on_resume(shared, tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    argv, out = run_args(shared, tmp_path)
    train_opd.main(argv + ["--stop-at", "2"])
    path = out / "ckpt" / "model.safetensors"
    tensors = load_file(str(path))
    del tensors["model.norm.weight"]
    save_file(tensors, str(path), metadata={"format": "pt"})
    before = folder_snapshot(out)
    message = refused(train_opd.main, argv + ["--resume"], capsys)
    assert "model.safetensors has" in message and "--restart" in message  # its manifest's size
    assert folder_snapshot(out) == before


def test_config_json_is_written_atomically(shared, tmp_path, monkeypatch):
    """A crash (disk full) while config.json is written must leave the old one or the new one, never
    half of it: else the folder is stuck (--resume cannot read it, a fresh run refuses the checkpoint)."""
    argv, out = run_args(shared, tmp_path)
    train_opd.main(argv + ["--stop-at", "2"])
    target = os.path.abspath(out / "config.json")
    real_open = builtins.open

    class DiskFull(io.StringIO):
        def __init__(self, f):
            super().__init__()
            self.f = f

        def write(self, s):
            self.f.write(s[: len(s) // 2])
            self.f.flush()
            raise OSError(28, "No space left on device (simulated)")

        def close(self):
            self.f.close()

        def __exit__(self, *exc):
            self.f.close()

    def crashing_open(file, mode="r", *a, **kw):
        f = real_open(file, mode, *a, **kw)
        if (
            isinstance(file, (str, os.PathLike))
            and os.path.abspath(file) == target
            and ("w" in mode or "a" in mode)
        ):
            return DiskFull(f)
        return f

    monkeypatch.setattr(builtins, "open", crashing_open)
    monkeypatch.setattr(io, "open", crashing_open)
    try:
        train_opd.main(argv + ["--resume", "--stop-at", "3"])
    except BaseException:
        pass  # the crash itself is the environment's; what matters is the folder it leaves
    monkeypatch.undo()
    json.load(open(out / "config.json"))  # whole, not torn
    train_opd.main(argv + ["--resume"])
    assert training_steps(out) == [1, 2, 3, 4]


def test_resume_from_the_folder_alone_equals_the_uninterrupted_run(shared, tmp_path, monkeypatch, capsys):
    """`--out DIR --resume` needs no other flag: the run's own come from DIR/config.json. A flag
    given with it must be the run's (another value is refused by name, before any model loads; the
    same value, spelt otherwise, is accepted), and the run still lands bit for bit where the
    uninterrupted one does."""
    argv, _ = run_args(shared, tmp_path)
    straight, out = tmp_path / "straight", tmp_path / "out"
    train_opd.main(without(argv, "--out") + ["--out", str(straight)])
    kill_run_at_step_3(monkeypatch, lambda: train_opd.main(argv))
    assert ckpt_step(out) == 2
    before = folder_snapshot(out)
    with monkeypatch.context() as m:
        forbid_model_loads(m)
        message = refused(train_opd.main, ["--out", str(out), "--resume", "--lr", "1e-3"], capsys)
    assert "--lr was 0.003, now 0.001" in message and str(out) in message
    assert folder_snapshot(out) == before, "the refused resume changed the run folder"
    # the run's own value, in another spelling, with --stop-at (which may change)
    train_opd.main(["--out", str(out), "--resume", "--lr", "0.003", "--stop-at", "3"])
    assert ckpt_step(out) == 3 and not (out / "summary.json").exists()
    train_opd.main(["--out", str(out), "--resume"])
    ra, rb = same_final_weights(straight, out)
    assert [r["step"] for r in rb] == [1, 2, 3, 4]
    assert [(r["loss"], r["len/mean"]) for r in ra] == [(r["loss"], r["len/mean"]) for r in rb]
    assert json.load(open(out / "config.json")) == {
        **json.load(open(straight / "config.json")),
        "out": str(out),
    }


def test_resume_into_a_folder_without_config_json_is_refused(shared, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "metrics.jsonl").write_text("")
    forbid_model_loads(monkeypatch)
    for main, argv in (
        (train_opd.main, ["--out", str(out), "--resume"]),
        (build.main, ["--out", str(out), "--resume"]),
    ):
        message = refused(main, argv, capsys)
        assert "config.json" in message and str(out) in message and "--resume" in message
    assert sorted(p.name for p in out.iterdir()) == ["metrics.jsonl"]


PARSERS = {
    "opd": (train_opd, ["--preset", "paper", "--batch-size", "8", "--lr", "1e-5", "--seed", "3"]),
    "opsd": (train_opsd, ["--preset", "tiny-answer", "--teacher-mode", "ema", "--threads", "2"]),
    "grpo": (train_grpo, ["--preset", "paper", "--group-size", "4", "--stop-at", "5"]),
    "sft": (train_sft, ["--preset", "paper-sft", "--lr", "1e-5"]),
}


@pytest.mark.parametrize("name", list(PARSERS))
def test_every_trainer_resumes_with_its_saved_config(name, tmp_path):
    """A resumed config is the saved one (its preset, not the default, and its seed and threads),
    with this start's --stop-at; a flag given must equal the saved value."""
    module, argv = PARSERS[name]
    out = tmp_path / "run"
    out.mkdir()
    cfg = module.parse_config(argv + ["--out", str(out)])
    (out / "config.json").write_text(json.dumps(cfg))
    resumed = module.parse_config(["--out", str(out), "--resume"])
    assert resumed == dict(cfg, resume=True, stop_at=0)
    assert module.parse_config(["--resume", "--out", str(out), *argv[:2], "--threads", "1"]) == dict(
        cfg, resume=True, stop_at=0, threads=1
    )
    default = next(iter(module.PRESETS))
    with pytest.raises(errors.UserError, match=f"--preset was '{argv[1]}', now '{default}'"):
        module.parse_config(["--out", str(out), "--resume", "--preset", default])
    may = r"only --stop-at(, --threads and --on-collapse| and --threads) may"  # OPD and OPSD have the alarm
    with pytest.raises(errors.UserError, match=r"--seed was \d+, now 7.*" + may):
        module.parse_config(["--out", str(out), "--resume", "--seed", "7"])


def test_a_tiny_world_model_resumes_from_its_folder_alone(tmp_path):
    """python -m tiny_world --out DIR --resume: the recipe (here a smaller shape and another
    schedule than any of mix.py's) comes from DIR/config.json."""
    build.train_model(small_run(tmp_path / "straight"))
    build.train_model(small_run(tmp_path / "cut", stop_at=3))
    with pytest.raises(errors.UserError, match="--steps was 7, now 9"):
        build.main(["--out", str(tmp_path / "cut"), "--resume", "--steps", "9"])
    with pytest.raises(errors.UserError, match="--model student .*another recipe"):
        build.main(["--model", "student", "--out", str(tmp_path / "cut"), "--resume"])
    build.main(["--out", str(tmp_path / "cut"), "--resume", "--steps", "7"])
    wa, _ = models.load(str(tmp_path / "straight" / "ckpt"))
    wb, _ = models.load(str(tmp_path / "cut" / "ckpt"))
    for (k, va), vb in zip(wa.state_dict().items(), wb.state_dict().values()):
        assert torch.equal(va, vb), k


# -----------------------------------------------------------------------------
# A run writes only into a folder of its own (folders.py), and every stuck folder resumes or restarts


def test_no_script_writes_into_a_folder_it_does_not_own(shared, tmp_path, capsys):
    """A model folder, an evaluation, another script's run, a finished run whose ckpt/ was deleted,
    a training run under eval_math, a file no run writes: each refused by name, nothing changed."""
    import shutil

    model = tmp_path / "model"
    shutil.copytree(shared["student"], model)
    ev = tmp_path / "ev"
    eval_cli.main(
        ["--model", shared["student"], "--bench", "synthetic", "--synthetic-n", "4", "--max-new-tokens", "8"]
        + ["--batch-size", "4", "--threads", "1", "--quiet", "--out", str(ev)]
    )
    argv, out = run_args(shared, tmp_path)
    finished = tmp_path / "finished"
    train_opd.main(without(argv, "--out") + ["--out", str(finished)])
    shutil.rmtree(finished / "ckpt")  # to save disk: the run's results remain
    stopped = tmp_path / "stopped"
    train_opd.main(without(argv, "--out") + ["--out", str(stopped), "--stop-at", "2"])
    cases = [
        (train_opd.main, model, "a model"),
        (train_sft.main, model, "a model"),
        (train_opd.main, ev, "eval_math.py"),
        (train_opd.main, finished, "finished"),
        (train_grpo.main, stopped, "train_opd.py"),
    ]
    for main, folder, culprit in cases:
        base = argv if main is train_opd.main else ["--student", shared["student"], "--threads", "1"]
        before = folder_snapshot(folder)
        message = refused(main, without(base, "--out") + ["--out", str(folder)], capsys)
        assert str(folder) in message and culprit in message, message
        assert folder_snapshot(folder) == before, f"{main.__module__} changed {folder}"
    before = folder_snapshot(stopped)
    evaluation = ["--model", shared["student"], "--bench", "synthetic", "--quiet", "--out", str(stopped)]
    assert "train_opd.py" in refused(eval_cli.main, evaluation, capsys)
    assert "train_opd.py" in refused(probes.main, evaluation + ["--probe-teacher", shared["teacher"]], capsys)
    assert folder_snapshot(stopped) == before
    train_opd.main(without(argv, "--out") + ["--out", str(stopped), "--resume"])  # and it still finishes
    assert training_steps(stopped) == [1, 2, 3, 4]


def test_a_killed_run_without_a_checkpoint_starts_over_but_keeps_a_stranger_file(shared, tmp_path, capsys):
    argv, out = run_args(shared, tmp_path, "--ckpt-every", "0")
    out.mkdir()
    (out / "run.json").write_text(json.dumps({"script": "train_opd.py", "inputs": {}}))
    (out / "metrics.jsonl").write_text('{"step": 0, "eval": {}}\n{"step": 1, "lo')
    (out / "ckpt.tmp").mkdir()  # a first checkpoint cut before its manifest
    (out / "ckpt.tmp" / "train_state.pt").write_bytes(b"half")
    (out / "notes.txt").write_text("mine")
    assert "notes.txt" in refused(train_opd.main, argv, capsys)
    (out / "notes.txt").unlink()
    train_opd.main(argv)
    assert training_steps(out) == [1, 2, 3, 4] and (out / "summary.json").exists()


def stopped_run(shared, tmp_path, *more):
    argv, out = run_args(shared, tmp_path, *more)
    train_opd.main(argv + ["--stop-at", "2"])
    return argv, out


@pytest.mark.parametrize("damage", ["metrics.jsonl", "config.json", "train_state.pt"])
def test_each_stuck_folder_is_refused_by_name_and_restarts(shared, tmp_path, capsys, damage):
    """The metrics log lost (its step-0 evaluation with it), config.json lost, train_state.pt
    truncated (a power cut): --resume names the file and --restart, which then runs to the end."""
    argv, out = stopped_run(shared, tmp_path)
    if damage == "train_state.pt":
        raw = (out / "ckpt" / damage).read_bytes()
        (out / "ckpt" / damage).write_bytes(raw[: len(raw) // 2])
    else:
        (out / damage).unlink()
    message = refused(train_opd.main, argv + ["--resume"], capsys)
    assert damage in message and "--restart" in message, message
    assert "checkpoint" in refused(train_opd.main, argv, capsys)  # a fresh start does not erase it either
    train_opd.main(argv + ["--restart"])
    assert training_steps(out) == [1, 2, 3, 4] and (out / "summary.json").exists()
    assert "finished" in refused(train_opd.main, argv + ["--restart"], capsys)  # results are never erased


def test_resume_refuses_inputs_changed_in_place_and_accepts_them_restored(shared, tmp_path, capsys):
    import shutil

    teacher, held_out = tmp_path / "teacher", tmp_path / "eval.jsonl"
    shutil.copytree(shared["teacher"], teacher)
    shutil.copy(shared["eval"], held_out)
    argv, out = run_args(shared, tmp_path)
    argv = [
        str(teacher) if a == shared["teacher"] else str(held_out) if a == shared["eval"] else a for a in argv
    ]
    train_opd.main(argv + ["--stop-at", "2"])
    weights = (teacher / "model.safetensors").read_bytes()
    shutil.copy(os.path.join(shared["student"], "model.safetensors"), teacher / "model.safetensors")
    message = refused(train_opd.main, argv + ["--resume"], capsys)
    assert "the teacher (--teacher)" in message and "held-out" not in message
    (teacher / "model.safetensors").write_bytes(weights)
    rows = held_out.read_text()
    held_out.write_text(
        rows.replace('"answer": "3"', '"answer": "4"', 1) if '"answer": "3"' in rows else rows + rows
    )
    assert "the held-out set" in refused(train_opd.main, argv + ["--resume"], capsys)
    held_out.write_text(rows)
    train_opd.main(argv + ["--resume"])
    assert training_steps(out) == [1, 2, 3, 4]


def test_a_moved_run_folder_resumes_where_it_lies(shared, tmp_path):
    argv, out = stopped_run(shared, tmp_path)
    moved = tmp_path / "elsewhere" / "run"
    moved.parent.mkdir()
    os.rename(out, moved)
    train_opd.main(["--out", str(moved), "--resume"])
    assert training_steps(moved) == [1, 2, 3, 4] and (moved / "summary.json").exists()
    assert json.load(open(moved / "config.json"))["out"] == str(moved)


def test_a_stop_at_the_checkpoint_has_passed_is_refused(shared, tmp_path, capsys):
    argv, out = stopped_run(shared, tmp_path, "--steps", "6")
    message = refused(train_opd.main, argv + ["--resume", "--stop-at", "1"], capsys)
    assert "--stop-at 1" in message and "step 2" in message


def test_a_damaged_line_inside_the_metrics_log_is_refused_on_resume(shared, tmp_path, capsys):
    """A kill tears only the last line (dropped on resume, test above); a line damaged inside the
    log would lose its step's record, so the resume names it instead of dropping it."""
    argv, out = stopped_run(shared, tmp_path)
    lines = (out / "metrics.jsonl").read_text().splitlines(keepends=True)
    lines[1] = lines[1][:20] + "\n"  # step 1's record, cut
    (out / "metrics.jsonl").write_text("".join(lines))
    message = refused(train_opd.main, argv + ["--resume"], capsys)
    assert "metrics.jsonl, line 2" in message and "--restart" in message
    del lines[1]  # the user's way on: without that step's record
    (out / "metrics.jsonl").write_text("".join(lines))
    train_opd.main(argv + ["--resume"])
    assert training_steps(out) == [2, 3, 4] and (out / "summary.json").exists()


def test_a_run_of_a_version_without_run_json_or_manifests_resumes_or_restarts(shared, tmp_path, capsys):
    for how in ("--resume", "--restart"):
        argv, out = run_args(shared, tmp_path / how.strip("-"))
        train_opd.main(argv + ["--stop-at", "2"])
        (out / "run.json").unlink()  # what a version without these files left
        (out / "ckpt" / "manifest.json").unlink()
        assert "--restart" in refused(train_opd.main, argv, capsys)  # a fresh start does not take it
        train_opd.main(argv + [how])
        assert training_steps(out) == [1, 2, 3, 4] and (out / "summary.json").exists()
        assert json.load(open(out / "run.json"))["script"] == "train_opd.py"


def test_a_start_killed_while_writing_run_json_leaves_a_folder_that_starts(shared, tmp_path):
    argv, out = run_args(shared, tmp_path)
    out.mkdir()
    (out / "run.json.part").write_text('{"scri')
    train_opd.main(argv)
    assert training_steps(out) == [1, 2, 3, 4]


def test_a_kill_after_the_final_checkpoint_evaluates_once_on_resume(shared, tmp_path):
    argv, out = run_args(shared, tmp_path)
    train_opd.main(argv)
    (out / "summary.json").unlink()  # killed after the final checkpoint, before the summary
    train_opd.main(argv + ["--resume"])
    evals = [json.loads(line)["step"] for line in open(out / "metrics.jsonl") if '"eval"' in line]
    assert evals == [0, 4] and (out / "summary.json").exists()
