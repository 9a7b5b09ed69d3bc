"""Reading the report's runs into claims: means ± std over seeds, the collapse signature, and the
collector of RESULTS.md's sections and claims.

What this file is
    Small readers of a finished run folder (`load`, `tail_mean`, `collapsed`: the signature), the number
    format of every table cell (`fmt`: mean ± sample std over seeds), the verdict scale (`verdict`)
    and `Report`, which the sections of experiments/mechanisms.py and experiments/fixes.py fill
    with Markdown lines and claims. A claim is one row of RESULTS.md's headline table: its name,
    the paper's words, what the runs show, the verdict rule written out, and the verdict computed
    by that rule.

Paper (docs/paper.md)
    §2.5 the collapse monitors (`collapsed`; Mechanism 2's protocol reads them in experiments/collapse.py).

What it simplifies
    * `collapsed` is the signature alone (diagnostics.collapse_signature: over its last 10 steps the
      student's mass on its own Top-K below 0.9, or more than 10 % of responses truncated), for the
      fixes' tables; Mechanism 2's protocol adds an accuracy drop (docs/collapse.md).
"""

import os
import statistics

import diagnostics
import run_folder
from experiments import plot, settings


def load(root: str, name: str, file: str = "summary.json") -> dict:
    return run_folder.read_json(os.path.join(root, name), file)


def tail_mean(root: str, name: str, key: str, last: int = 10) -> float:
    """The mean of a training monitor over the last `last` steps of a run's metrics.jsonl."""
    return statistics.mean(r[key] for r in run_folder.read_log(os.path.join(root, name))[0][-last:])


def fmt(values: list, digits: int = 3) -> str:
    """mean ± sample std over seeds (the value alone for one seed)."""
    m = statistics.mean(values)
    if len(values) == 1:
        return f"{m:.{digits}f}"
    return f"{m:.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def verdict(all_seeds: bool, some_seeds: bool) -> str:
    return "reproduced" if all_seeds else "partly" if some_seeds else "not reproduced"


def collapsed(root: str, name: str) -> bool:
    """The collapse signature of docs/paper.md §2.5 over the last 10 steps
    (diagnostics.collapse_signature): the student's mass has left its own Top-K (below 0.9) or
    responses stop terminating (over 10 % truncated)."""
    return diagnostics.collapse_signature(run_folder.read_log(os.path.join(root, name))[0])["collapsed"]


acc = lambda e: e["acc/pass@1"]  # held-out pass@1 of an evaluation summary


def accs(summaries: list, who: str) -> str:
    """The held-out accuracy of `who` (a summary's evaluation: "teacher", "student_before",
    "student_after") in each summary, as mean ± std."""
    return fmt([acc(s[who]) for s in summaries])


class Report:
    """Collects the sections (Markdown lines) and the claims of RESULTS.md while reading the runs."""

    def __init__(self, root: str, scale: dict, figs_rel: str, figs: str, world: int = 1):
        self.root, self.scale, self.figs_rel, self.figs = root, scale, figs_rel, figs
        self.world, self.W = world, settings.WORLDS[world]
        self.student, self.teacher = self.W["student"], self.W["teacher"]
        self.seeds, self.N = scale["seeds"], len(scale["seeds"])
        self.preset_flag = "".join(" " + a for a in self.W["preset"])
        self.claims, self.body = [], []

    def names(self, pattern: str) -> list:  # one run name per seed
        return [pattern.format(s=s) for s in self.seeds]

    def summaries(self, pattern: str) -> list:
        return [load(self.root, n) for n in self.names(pattern)]

    def claim(self, *row) -> None:  # (name, the paper's words, what the runs show, the rule, the verdict)
        self.claims.append(row)

    def figure(self, runs: list, file: str, title: str) -> str:
        plot.plot([os.path.join(self.root, n) for n in runs], os.path.join(self.figs, file), title)
        return f"![{title}]({self.figs_rel}/{file})"
