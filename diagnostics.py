"""The collapse diagnostics of a response and the intervals of a score: what §2.5's monitors read
from a response's text and token ids, and the 95% intervals the evaluation tables print.

What this file is
    `repetition_ratio` (the fraction of tokens that complete a 3-gram seen earlier in the same
    response), `hedging_rate` (the words of `HEDGE_WORDS` per 1,000 words), `response_stats` (the
    monitors of a batch of responses under the metric names of the logs: length, truncation,
    repetition, hedging), `boxed_only_rate` (how often a response is a bare `\\boxed{...}`, the
    tiny world's shared rule, `BOXED_ONLY`), `collapse_signature` (the signature of a collapse
    in a run's last logged steps), and the intervals `wilson_ci` (a proportion) and
    `mean_ci` (a mean over problems). eval_math.py's records and summaries, the trainers' rollout
    monitors, train_sft.py's trace filter and tiny_world/measure.py read them. The file imports
    only the standard library.

Paper (docs/paper.md)
    §2.5 metrics and collapse monitors: response length and truncation, the 3-gram repetition
    ratio, the rate of the hedging words ("wait", "maybe", "but", "alternatively"); the collapse
    signature of a Top-K run (the student's mass leaving its own Top-K, responses that stop ending).

Command
    python -m pytest -q tests/test_diagnostics.py

What it simplifies
    * Repetition counts token ids, not words; the ratio's denominator is every token of the
      response, the first two included.
    * A word is a whitespace-separated token with the punctuation around it stripped; "wait," is
      "wait", "waiting" is not.
    * `BOXED_ONLY` accepts a box without nested braces only (the tiny world's answers have none).
    * A run has collapsed when, over its last 10 steps, the student's mass on its own Top-K is
      below 0.9 or more than 10 % of its responses are truncated: one threshold for every run.
    * `mean_ci` is the normal approximation over problems, clipped to [0, 1].
"""

import math
import re
from typing import Optional

HEDGE_WORDS = ("wait", "maybe", "but", "alternatively")


def repetition_ratio(token_ids) -> float:
    """The fraction of tokens that complete a 3-gram already seen earlier in the same response."""
    ids = token_ids.tolist() if hasattr(token_ids, "tolist") else list(token_ids)  # tensors too
    if not ids:
        return 0.0
    seen, repeated = set(), 0
    for i in range(2, len(ids)):
        gram = (ids[i - 2], ids[i - 1], ids[i])
        if gram in seen:
            repeated += 1
        seen.add(gram)
    return repeated / len(ids)


def hedging_rate(text: str, words=HEDGE_WORDS) -> float:
    """Occurrences of the hedging words per 1,000 words of text (case-insensitive; a word is a
    whitespace-separated token, punctuation around it ignored)."""
    tokens = text.lower().split()
    if not tokens:
        return 0.0
    targets = set(words)
    return 1000.0 * sum(t.strip(".,;:!?\"'()[]") in targets for t in tokens) / len(tokens)


def response_stats(token_ids: list, texts: list, truncated: list) -> dict:
    """The collapse monitors of a batch of responses, with the metric names of the logs."""
    n = len(token_ids)
    if n == 0:
        return {}
    lengths = [len(t) for t in token_ids]
    return {
        "len/mean": sum(lengths) / n,
        "len/max": max(lengths),
        "len/truncated_frac": sum(bool(t) for t in truncated) / n,
        "rep/ratio": sum(repetition_ratio(t) for t in token_ids) / n,
        "hedge/per_1k_words": sum(hedging_rate(t) for t in texts) / n,
    }


BOXED_ONLY = re.compile(r"^\s*\\boxed\{[^{}]*\}\s*$")  # the tiny world's shared rule: the result alone


def boxed_only_rate(texts: list) -> float:
    """Fraction of responses that are a bare `\\boxed{...}` and nothing else (the synthetic
    shared rule's format, data.SYSTEM_RULE_SYNTHETIC)."""
    return sum(bool(BOXED_ONLY.match(t)) for t in texts) / max(len(texts), 1)


COLLAPSE_MASS, COLLAPSE_TRUNCATED = 0.9, 0.1  # the signature's thresholds (collapse_signature)


def collapse_signature(steps: list, last: int = 10) -> dict:
    """The collapse signature over the last `last` logged training steps (metrics.jsonl records):
    the mean student mass on its own Top-K (`topk/student_mass`), the mean truncated share
    (`len/truncated_frac`) and `collapsed`, whether the mass is below COLLAPSE_MASS or the share
    above COLLAPSE_TRUNCATED."""
    tail = steps[-last:]
    mass = sum(r["topk/student_mass"] for r in tail) / len(tail)
    truncated = sum(r["len/truncated_frac"] for r in tail) / len(tail)
    return {
        "mass": mass,
        "truncated": truncated,
        "collapsed": mass < COLLAPSE_MASS or truncated > COLLAPSE_TRUNCATED,
    }


# The collapse alarm's rule, chosen on the pilot of docs/collapse.md (part 1's rule): the 5-step
# mean of the student's mass off its own Top-K above 0.05
ALARM_RULE = {"deficit": 0.05}


def alarm_rings(steps: list, rule: dict, window: int = 5, base: int = 20) -> bool:
    """Whether the collapse alarm `rule` rings at the last of `steps` (training-step records, in
    order). Each key of `rule` is one condition, and any one rings: `deficit` τ, the `window`-step
    mean of the student's mass off its own Top-K (1 − `topk/student_mass`) above τ; `relative` ρ,
    that mean above ρ times its median over the first `base` steps (from step `base` on);
    `truncated` s, the `window`-step mean truncated share above s."""
    if len(steps) < window:
        return False
    tail = steps[-window:]
    deficit = sum(1 - r["topk/student_mass"] for r in tail) / window
    if "deficit" in rule and deficit > rule["deficit"]:
        return True
    if "relative" in rule and len(steps) >= base:
        start = sorted(1 - r["topk/student_mass"] for r in steps[:base])
        median = (start[(base - 1) // 2] + start[base // 2]) / 2
        if deficit > rule["relative"] * median:
            return True
    truncated = sum(r["len/truncated_frac"] for r in tail) / window
    return "truncated" in rule and truncated > rule["truncated"]


def first_alarm(steps: list, rule: dict) -> Optional[int]:
    """The step (its record's `step`) at which `rule` first rings over a run's records; None if never."""
    return next((r["step"] for i, r in enumerate(steps) if alarm_rings(steps[: i + 1], rule)), None)


def wilson_ci(correct: int, n: int, z: float = 1.96) -> tuple:
    """95% Wilson score interval of a proportion."""
    if n == 0:
        return (0.0, 0.0)
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def mean_ci(values: list, z: float = 1.96) -> tuple:
    """Normal-approximation 95% interval of a mean (per-problem accuracies for avg@k)."""
    n = len(values)
    if n < 2:
        return (values[0], values[0]) if values else (0.0, 0.0)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return (max(0.0, mean - z * sd / math.sqrt(n)), min(1.0, mean + z * sd / math.sqrt(n)))
