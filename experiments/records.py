"""Per-problem values read from the report's run folders, for the verdict protocol's paired
contrasts (docs/protocol.md §3): each reader returns {problem id: value} for one run.

What this file is
    The files the runs write, one value per problem: an evaluation's samples (`scores`: avg@k
    accuracy; `lengths`; `shares` of responses a judge accepts, such as declines or concise
    answers), the prefix probe's continuations (`probe`), the teacher's fit (`fit`) and Mechanism 3's
    measurement before and after training (`aggregation`). Evaluations are the trainers'
    OUT/eval/<which>.jsonl (`step0` before training, `final` the last step, `teacher`) or an
    eval_math.py folder's <bench>.jsonl (`bench`). `classes` sorts a constitution set's problems into
    flagged, lookalike and plain.

What it simplifies
    * A problem's value is the mean over its samples (k of them with --eval-k k), so every reader
      gives one number per problem whatever k was.
"""

import json
import os
import re

import data

_STEP = re.compile(r"^step(\d+)\.jsonl$")


def eval_file(folder: str, which: str) -> str:
    """The evaluation records `which` of a run: "final" (the highest step), "step0", "teacher", or an
    eval_math.py benchmark name ("synthetic" for its <bench>.jsonl in the folder itself)."""
    if which in ("final", "step0", "teacher") or _STEP.match(which + ".jsonl"):
        d = os.path.join(folder, "eval")
        if which == "final":
            steps = [int(m.group(1)) for m in map(_STEP.match, os.listdir(d)) if m]
            if not steps:
                raise FileNotFoundError(f"{d}: no stepN.jsonl evaluation")
            which = f"step{max(steps)}"
        return os.path.join(d, which + ".jsonl")
    return os.path.join(folder, which + ".jsonl")


def read_jsonl(path: str) -> list:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def per_problem(records: list, value) -> dict:
    """{id: mean of value(record) over the problem's records (its samples)}."""
    sums, counts = {}, {}
    for r in records:
        sums[r["id"]] = sums.get(r["id"], 0.0) + float(value(r))
        counts[r["id"]] = counts.get(r["id"], 0) + 1
    return {i: sums[i] / counts[i] for i in sums}


def scores(folder: str, which: str = "final") -> dict:
    """avg@k accuracy per problem of one evaluation (eval_file)."""
    return per_problem(read_jsonl(eval_file(folder, which)), lambda r: r["correct"])


def lengths(folder: str, which: str = "final") -> dict:
    """Mean response length in tokens per problem."""
    return per_problem(read_jsonl(eval_file(folder, which)), lambda r: r["length"])


def means(folder: str, which: str, measure) -> dict:
    """The mean of `measure(response text)` over each problem's responses."""
    return per_problem(read_jsonl(eval_file(folder, which)), lambda r: measure(r["response"]))


def shares(folder: str, which: str, judge) -> dict:
    """The share of each problem's responses that `judge(response text)` accepts."""
    return means(folder, which, lambda text: bool(judge(text)))


def probe(folder: str, f: float) -> dict:
    """The prefix probe (probes.py's probe.jsonl) at cut fraction f: {id: (the teacher's continuation
    right, the student's own sample right)}; f = 0 is the teacher alone."""
    return {
        r["id"]: (float(r["correct"]), bool(r["student_correct"]))
        for r in read_jsonl(os.path.join(folder, "probe.jsonl"))
        if abs(r["f"] - f) < 1e-9
    }


def fit(folder: str, key: str = "kl/full") -> dict:
    """The teacher's fit per problem (probes.py's fit.jsonl): the token mean of `key` over the
    student's sample of that problem."""
    return {r["id"]: r[key] for r in read_jsonl(os.path.join(folder, "fit.jsonl")) if r["tokens"]}


def aggregation(folder: str, when: str) -> dict:
    """Mechanism 3's measurement of an OPSD run (summary.json's mechanism3, `when` "before" or
    "after"): {id: {"kl/own_pi", "kl/geo_mean", "irreducible/-logZ", ...}} per problem."""
    path = os.path.join(folder, "summary.json")
    with open(path, encoding="utf-8") as f:
        m3 = (json.load(f).get("mechanism3") or {}).get(when) or {}
    if "per_problem" not in m3:  # a run made before the per-problem measurement, or without one
        raise FileNotFoundError(2, "no per-problem measurement", f"{path}: mechanism3.{when}.per_problem")
    return {r["id"]: r for r in m3["per_problem"]}


def config(folder: str) -> dict:
    with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
        return json.load(f)


def classes(cfg: dict) -> dict:
    """{id: "flagged", "lookalike" or "plain"} of a run's held-out set (its config's eval part, size
    and fractions: the set common.load_examples read)."""
    examples = data.load_examples(
        "synthetic",
        n=cfg["eval_n"],
        part=cfg["eval_part"],
        hard_frac=cfg.get("hard_frac", 0.0),
        flagged_frac=cfg.get("flagged_frac", 0.0),
    )
    return {
        ex.id: "flagged" if ex.meta.get("flagged") else "lookalike" if ex.meta.get("lookalike") else "plain"
        for ex in examples
    }
