"""The Makefile as a new user meets it: `make help` names every target and every variable, a variable
a target cannot use is refused by name instead of ignored, WORLD=2 runs the second world or is
refused, a run folder is never deleted or overwritten unless FRESH=1 asks, and `make plot` without
RUN draws the newest run. Nothing trains: the checks read `make -n` (commands printed, not run) or
run make with PY=echo in a temporary folder, where each training command only prints itself.

    .venv/bin/python -m pytest -q tests/test_make.py
"""

import os
import pathlib
import re
import shutil
import subprocess
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
MAKEFILE = ROOT / "Makefile"
TEXT = MAKEFILE.read_text()

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="GNU make is not installed")

# make's own variables, which the Makefile reads but a user does not set
MAKE_OWN = {"MAKE", "MAKECMDGOALS", "MAKEFLAGS", "MAKEFILE_LIST", "MAKELEVEL", "CURDIR", "SHELL"}
# targets whose only job is the virtual environment or this page: they read no variable of the runs
NO_RUNS = {"help", "install", "install-trl", "install-lint"}


def read_variables() -> set:
    """Every upper-case variable the Makefile reads (`$(NAME)`) or defines (`NAME ?=`), less make's own."""
    used = set(re.findall(r"(?<!\$)\$\(([A-Z][A-Z0-9_]*)\)", TEXT))
    defined = set(re.findall(r"^([A-Z][A-Z0-9_]*)\s*\??=", TEXT, re.M))
    return (used | defined) - MAKE_OWN


def targets() -> list:
    """Every target, in the order of the Makefile (a name followed by `:` but not by `:=`)."""
    return list(dict.fromkeys(re.findall(r"^([a-z][a-z-]*):(?!=)", TEXT, re.M)))


def clean_env() -> dict:
    """The environment without make's own settings or any of the Makefile's variables, so that a
    `make test THREADS=1` around pytest does not leak into the makes run here."""
    drop = {"MAKEFLAGS", "MFLAGS", "MAKEOVERRIDES", "MAKELEVEL", *read_variables()}
    return {k: v for k, v in os.environ.items() if k not in drop}


def stamp_folder(folder: pathlib.Path) -> pathlib.Path:
    """Make `folder` a place where make finds the install stamps newer than the requirements (so
    that no install step runs or prints) and no runs/: the working folder of every make here."""
    for name in ("requirements.txt", "requirements-trl.txt", "requirements-dev.txt"):
        shutil.copy(ROOT / name, folder / name)
    (folder / ".venv").mkdir()
    for stamp in (".installed", ".installed-trl", ".installed-lint"):
        (folder / ".venv" / stamp).touch()
    return folder


@pytest.fixture(scope="module")
def here(tmp_path_factory):
    return stamp_folder(tmp_path_factory.mktemp("make"))


def make(*args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "-f", str(MAKEFILE), *args],
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_parsers_read_the_makefile():
    assert {"THREADS", "WORLD", "RUN", "SEEDS", "OPD_ARGS", "FRESH", "RESUME", "JOBS"} <= read_variables()
    assert {"help", "opd", "opsd", "grpo", "collapse", "plot", "clean"} <= set(targets())


def test_help_names_every_target_and_every_variable(here):
    out = make("-s", "help", cwd=here)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    missing_targets = [
        t for t in targets() if not any(re.match(rf"\s*{re.escape(t)}\s", line) for line in lines)
    ]
    assert not missing_targets, f"make help does not list the targets {missing_targets}"
    missing_vars = [
        v for v in sorted(read_variables()) if not any(re.match(rf"\s*{v}=", line) for line in lines)
    ]
    assert not missing_vars, f"make help does not document the variables {missing_vars} (a `## NAME=` line)"


@pytest.mark.parametrize("target", targets())
def test_an_unknown_world_is_refused_by_every_target(target, here):
    out = make("-n", target, "WORLD=3", cwd=here)
    assert out.returncode != 0
    assert "WORLD" in out.stderr


@pytest.mark.parametrize("target", [t for t in targets() if t not in NO_RUNS])
def test_world_2_runs_the_second_world_or_is_refused_by_name(target, here):
    out = make("-n", target, "WORLD=2", cwd=here)
    if out.returncode == 0:
        assert "tiny2" in out.stdout or "--world 2" in out.stdout, (
            f"make {target} WORLD=2 neither runs the second world nor refuses WORLD:\n{out.stdout}"
        )
    else:
        assert "WORLD" in out.stderr, out.stderr


def reads(here) -> dict:
    """Target -> the variables `make help` says it reads."""
    lines = make("-s", "help", cwd=here).stdout.split("what each target reads")[1].splitlines()[1:]
    return {w[0]: set(w[1:]) - {"nothing"} for w in (line.split() for line in lines) if w}


def test_help_says_what_each_runs_target_reads(here):
    table = reads(here)
    assert set(table) == set(targets()) - NO_RUNS
    assert table["opd"] >= {"THREADS", "WORLD", "RUN", "FRESH", "RESUME", "OPD_ARGS", "MODEL"}


@pytest.mark.parametrize("target", [t for t in targets() if t not in NO_RUNS])
def test_a_variable_the_target_does_not_read_is_refused_by_name(target, here):
    table = reads(here)
    unread = sorted(set().union(*table.values()) - table[target])  # the runs' variables this one ignores
    var = unread[len(target) % len(unread)]  # one per target, a different one from target to target
    out = make("-n", target, f"{var}=1", cwd=here)
    assert out.returncode != 0, f"make {target} {var}=1 was accepted, though {target} does not read {var}"
    assert var in out.stderr and target in out.stderr


@pytest.mark.parametrize(
    "args, named",
    [
        (["opd", "WORLD=2", "MODEL=Qwen/Qwen3-1.7B"], "MODEL"),
        (["opd", "FRESH=1", "RESUME=1"], "RESUME"),
        (["opd", "FRESH=0"], "FRESH"),
        (["opsd", "WORLD=2", "PRESET=tiny-answer"], "tiny2-answer"),
        (["tiny", "FORCE=yes"], "FORCE"),
    ],
)
def test_contradictions_are_refused_by_name(args, named, here):
    out = make("-n", *args, cwd=here)
    assert out.returncode != 0 and named in out.stderr, out.stderr


def test_opsd_has_its_own_run_folder_and_a_default_that_keeps_accuracy(here):
    # the default is the shared rule that keeps the steps (world 2); WORLD=1 picks its own world's rule
    assert "--out runs/opsd-" in make("-n", "opsd", cwd=here).stdout
    assert "--preset tiny2-concise" in make("-n", "opsd", cwd=here).stdout
    assert "--preset tiny2-concise" in make("-n", "opsd", "WORLD=2", cwd=here).stdout
    assert "--preset tiny-rule" in make("-n", "opsd", "WORLD=1", cwd=here).stdout
    assert "--out runs/opd-" in make("-n", "opd", cwd=here).stdout


@pytest.mark.parametrize("target", [t for t in targets() if t not in NO_RUNS | {"clean"}])
def test_nothing_is_deleted_unless_asked(target, here):
    out = make("-n", target, cwd=here)
    assert out.returncode == 0, out.stderr
    assert "rm -rf" not in out.stdout, f"make {target} deletes without FRESH=1:\n{out.stdout}"


# -----------------------------------------------------------------------------
# Make run for real in a temporary folder, with PY=echo: the folder checks run, the trainers do not


@pytest.fixture
def sandbox(tmp_path):
    """A folder of its own for a test that writes runs/."""
    return stamp_folder(tmp_path)


def run_in(folder, *args):
    return make("-s", "PY=echo", *args, cwd=folder)


def fake_run(folder: pathlib.Path, finished: bool = False, checkpoint: bool = False) -> None:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "metrics.jsonl").write_text("")
    if checkpoint or finished:
        (folder / "ckpt").mkdir()
        (folder / "ckpt" / "train_state.pt").write_text("")
        (folder / "ckpt" / "manifest.json").write_text("{}")  # written last: a checkpoint written to its end
    if finished:
        (folder / "summary.json").write_text("{}")


def test_plot_without_run_draws_the_newest_run(sandbox):
    out = run_in(sandbox, "plot")
    assert out.returncode != 0 and "RUN=" in out.stderr  # no run yet: says how to name one
    fake_run(sandbox / "runs" / "opd-old", finished=True)
    fake_run(sandbox / "runs" / "collapse" / "topk_sg-k5-s0", finished=True)
    old, new = sandbox / "runs" / "opd-old" / "metrics.jsonl", sandbox / "runs" / "collapse" / "topk_sg-k5-s0"
    os.utime(old, (time.time() - 100, time.time() - 100))
    dry = make("-n", "plot", cwd=sandbox)
    named = dry.stdout.split("experiments.plot")[1].split()[0]
    assert named == "runs/collapse/topk_sg-k5-s0" and (sandbox / named).is_dir()
    os.utime(new / "metrics.jsonl", (time.time() - 200, time.time() - 200))
    assert "experiments.plot runs/opd-old" in run_in(sandbox, "plot").stdout
    assert "experiments.plot runs/elsewhere" in run_in(sandbox, "plot", "RUN=runs/elsewhere").stdout


def test_a_finished_run_is_refused_and_kept_until_fresh(sandbox):
    folder = sandbox / "runs" / "grpo"
    fake_run(folder, finished=True)
    out = run_in(sandbox, "grpo")
    assert out.returncode != 0 and "make grpo FRESH=1" in out.stderr
    assert (folder / "summary.json").exists()
    out = run_in(sandbox, "grpo", "FRESH=1")
    assert out.returncode == 0, out.stderr
    assert "deleting runs/grpo" in out.stdout and "train_grpo.py --out runs/grpo" in out.stdout
    assert not folder.exists()  # PY=echo trained nothing into it


def test_an_unfinished_run_is_refused_or_continued(sandbox):
    fake_run(sandbox / "runs" / "sft-student2", checkpoint=True)
    out = run_in(sandbox, "sft-student", "WORLD=2")
    assert out.returncode != 0
    assert (
        "make sft-student WORLD=2 RESUME=1" in out.stderr and "make sft-student WORLD=2 FRESH=1" in out.stderr
    )
    out = run_in(sandbox, "sft-student", "WORLD=2", "RESUME=1")
    assert out.returncode == 0, out.stderr
    assert "--out runs/sft-student2" in out.stdout and "--resume" in out.stdout
    out = run_in(sandbox, "opd", "RESUME=1")  # a new dated folder: nothing to continue
    assert out.returncode != 0 and "RUN=" in out.stderr


def test_a_target_of_several_runs_reuses_finished_ones_and_continues_on_resume(sandbox):
    tree = sandbox / "runs" / "collapse-pilot2"
    fake_run(tree / "topk_plain-k1", finished=True)
    fake_run(tree / "topk_plain-k5", checkpoint=True)
    args = ["collapse-pilot", "WORLD=2"]
    out = run_in(sandbox, *args)
    assert out.returncode != 0
    assert "make collapse-pilot WORLD=2 RESUME=1" in out.stderr and "FRESH=1" in out.stderr
    out = run_in(sandbox, *args, "RESUME=1")
    assert out.returncode == 0, out.stderr
    assert "topk_plain-k1: finished, reused" in out.stdout
    assert "--out runs/collapse-pilot2/topk_plain-k5 --resume" in out.stdout
    assert "--out runs/collapse-pilot2/topk_plain-k20" in out.stdout  # a missing run starts
    assert "--loss topk_renorm_intersect_sg --k 20" in out.stdout
    assert (tree / "topk_plain-k1" / "summary.json").exists()


@pytest.mark.skipif(shutil.which("flock") is None, reason="no flock(1) to test a folder's lock with")
def test_fresh_never_deletes_the_folder_of_a_live_run(sandbox):
    import fcntl

    folder = sandbox / "runs" / "opd-live"
    fake_run(folder, checkpoint=True)
    with open(folder / ".lock", "a") as lock:  # what folders.lock holds while a run trains
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        out = run_in(sandbox, "opd", "RUN=runs/opd-live", "FRESH=1")
    assert out.returncode != 0 and "live run" in out.stderr
    assert (folder / "ckpt" / "train_state.pt").exists()
