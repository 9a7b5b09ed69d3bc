"""The folders our scripts write into (`--out`): who owns one, its lock, and what a start may clear.

A script writes only into a folder it owns. Its first write into a folder is `run.json`, which
names the script (and, for a training run, fingerprints of what it reads: run_folder.py). A fresh
start (`claim`) takes

    a folder that does not exist, an empty one, or one where a start was killed while it wrote
        run.json;
    the unfinished run of the same script that stopped before its first checkpoint (it starts
        over: its files are removed first), or, with --restart, one that has a checkpoint, or
        a run of a version that wrote no run.json;

and refuses everything else by name: a model folder, another script's run or evaluation, a
finished run (summary.json), a run with a checkpoint (continue it with --resume), any file no run
of the script writes. Nothing is deleted while another live process holds the folder: the lock
(`lock`) is taken before the folder is read.
"""

import fcntl
import fnmatch
import json
import os
import shutil

from errors import UserError

OWNER = "run.json"  # the first file a script writes into a folder it claims
FINISHED = ("summary.json", "probe_summary.json")  # written last: the folder holds a finished run
CHECKPOINTS = ("ckpt", "ckpt.tmp", "ckpt.old")  # checkpoint.py's folders
MANIFEST = "manifest.json"  # written last into a checkpoint folder (checkpoint.py)

# -----------------------------------------------------------------------------
# The lock

_LOCKS = {}  # folder (real path) -> the open lock file this process holds


def lock(out: str) -> None:
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
            f"--out {out}: another live process is using this folder; wait for it to end, or choose "
            "another --out"
        ) from None
    _LOCKS[key] = f


def unlock(out: str) -> None:
    """Release the lock `lock` took (a run that ends inside a longer-lived process)."""
    f = _LOCKS.pop(os.path.realpath(out), None)
    if f is not None:
        f.close()


def is_locked(out: str) -> bool:
    """Whether a live process (this one or another) holds `out`'s lock."""
    if os.path.realpath(out) in _LOCKS:
        return True
    path = os.path.join(out, ".lock")
    if not os.path.isfile(path):
        return False
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
    return False


# -----------------------------------------------------------------------------
# Who wrote a folder


def write_json(path: str, obj) -> None:
    """Write JSON durably: a temporary file beside it, flushed to the disk, then a rename (a kill
    or a power cut leaves the old file or the new, never a torn one)."""
    tmp = path + ".part"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def owner(out: str):
    """The record of the script that owns `out` (its run.json), or None where there is none."""
    path = os.path.join(out, OWNER)
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            rec = json.load(f)
        if not isinstance(rec, dict) or not isinstance(rec.get("script"), str):
            raise ValueError
    except (ValueError, UnicodeDecodeError):
        raise UserError(
            f"{path} is not a record any script of this project wrote; move that folder's files out or "
            "choose another --out"
        ) from None
    return rec


def entries(out: str) -> list:
    """The names in `out`, its lock aside."""
    return sorted(e for e in os.listdir(out) if e != ".lock")


def resumable(out: str) -> bool:
    """Whether `--resume` can continue the run in `out`: it holds a complete checkpoint, or the
    ckpt/ of a version that wrote no manifest (checkpoint.adopt seals it on resume)."""
    return has_checkpoint(out) or os.path.isfile(os.path.join(out, "ckpt", "train_state.pt"))


def looks_like_a_run(names: list) -> bool:
    """Whether a folder without run.json holds what a run of this project writes: its config and
    metrics (a model folder has a config.json too, never a metrics.jsonl)."""
    return "config.json" in names and "metrics.jsonl" in names


def describe(out: str, names: list) -> str:
    """What a folder that no script of ours owns holds, for a refusal."""
    has = set(names)
    if "adapter_config.json" in has or (
        "config.json" in has and any(n.endswith((".safetensors", ".bin")) for n in has)
    ):
        return "a model (" + ", ".join(names[:3]) + ")"
    if looks_like_a_run(names):
        return (
            "a run without run.json (an older version's, or a copy's), which a fresh start does not "
            "take; continue it with --resume, or start it over with --restart"
        )
    shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    return f"files no run of this script wrote ({shown})"


def has_checkpoint(out: str) -> bool:
    """Whether `out` holds a checkpoint that was written to its end (checkpoint.py: its manifest
    is written last), in any of its swap's folders; a cut write alone does not count."""
    return any(os.path.isfile(os.path.join(out, d, MANIFEST)) for d in CHECKPOINTS)


def check(out: str, script: str, writes: tuple, restart: bool = False) -> list:
    """Whether `script` may start afresh in `out` (module docstring): a UserError naming what is
    there when it may not, else the entries that the start removes first (an unfinished run of its
    own, or [] when the folder is new or empty). Reads only: `claim` takes the folder."""
    if not out:
        raise UserError("--out '': names no folder; pass a folder for the run's files")
    if os.path.islink(out) and not os.path.exists(out):
        raise UserError(
            f"--out {out}: a link to {os.readlink(out)}, which does not exist; fix it or choose another --out"
        )
    if os.path.exists(out) and not os.path.isdir(out):
        raise UserError(f"--out {out}: a file, not a folder; choose another --out")
    writes = (OWNER, OWNER + ".part", *writes)
    names = entries(out) if os.path.isdir(out) else []
    if not names:
        return []
    rec = owner(out)
    if rec is None and all(n == OWNER + ".part" for n in names):
        return names  # a start killed while it wrote run.json: nothing else is there
    if rec is None and restart and looks_like_a_run(names):
        rec = {"script": script}  # --restart names it: a run of an older version, started over
    if rec is None:
        raise UserError(
            f"--out {out} holds {describe(out, names)}; a run writes only into a folder of its own: "
            "choose another --out"
        )
    if rec["script"] != script:
        raise UserError(f"--out {out} holds a run of {rec['script']}, not of {script}; choose another --out")
    done = [n for n in FINISHED if n in names]
    if done:
        raise UserError(
            f"--out {out} holds a finished run of {script} ({done[0]}); its results stay: choose another --out"
        )
    if not restart and has_checkpoint(out):
        raise UserError(
            f"--out {out} already holds a run with a checkpoint; continue it with `--out {out} --resume` "
            "(its config.json holds its flags), start it over with --restart, or choose another --out"
        )
    foreign = [n for n in names if not any(fnmatch.fnmatch(n, w) for w in writes)]
    if foreign:
        raise UserError(
            f"--out {out} holds an unfinished run of {script} and files no run writes ({', '.join(foreign[:4])}); "
            "move them out, or choose another --out"
        )
    return names


def claim(out: str, script: str, writes: tuple, record: dict, restart: bool = False, say=print) -> None:
    """Make `out` if needed, lock it, check it again under the lock (`check`), remove the files of
    an unfinished run of `script` that starts over there (saying so), then write run.json:
    {"script": script, **record}."""
    if not os.path.isdir(out):
        check(out, script, writes, restart)  # an empty name, a dangling link, a file
        os.makedirs(out, exist_ok=True)
    lock(out)
    old = check(out, script, writes, restart)
    if old:
        why = "--restart" if restart else f"an unfinished run of {script} without a checkpoint"
        say(f"{out}: {why}: starting over, removing {', '.join(old)}")
        for name in old:
            path = os.path.join(out, name)
            shutil.rmtree(path) if os.path.isdir(path) and not os.path.islink(path) else os.remove(path)
    write_json(os.path.join(out, OWNER), {"script": script, **record})
