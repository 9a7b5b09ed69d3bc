"""Agreement of the strict grader (grader.is_equiv) with the hand labels of the two answer suites,
tests/grader_suite.jsonl (MATH-500's answer forms) and tests/grader_suite_outside.jsonl (gold
answers from outside MATH-500, forms from other graders' tests), and, when the `math_verify`
package is importable, of math-verify on the same pairs.

    .venv/bin/python bench/grader_agreement.py                 # ours only, both suites
    python3 -m venv /tmp/mvenv && /tmp/mvenv/bin/pip install math-verify==0.9.0 sympy
    PYTHONPATH=. /tmp/mvenv/bin/python bench/grader_agreement.py   # ours and math-verify
    .venv/bin/python bench/grader_agreement.py --suite tests/grader_suite_outside.jsonl   # one suite

math-verify is a measurement aid, not a dependency: keep it in its own environment (our grader
needs only sympy and the standard library). It gets each answer wrapped as `$\\boxed{...}$`, the
form it extracts best, and `verify(parse(gold), parse(pred))`; an exception counts as "not equal".
Each grader's list of wrong cases follows its figure. --grader-dir DIR grades with DIR/grader.py
instead (an older version, say) for a before/after comparison.
"""

import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUITES = [os.path.join(ROOT, "tests", name) for name in ("grader_suite.jsonl", "grader_suite_outside.jsonl")]


def ours():
    import grader

    def judge(gold, pred):
        try:
            return grader.is_equiv(pred, gold)
        except Exception as e:  # noqa: BLE001 -- an older grader may raise: a wrong verdict, shown
            return f"raised {type(e).__name__}"

    return judge


def math_verify():
    """math-verify's verdict function and its version, or None when it is not installed."""
    try:
        from math_verify import parse, verify
    except ImportError:
        return None
    try:
        from importlib.metadata import version

        ver = version("math-verify")
    except Exception:  # noqa: BLE001 -- the version is only printed
        ver = "unknown"

    def judge(gold, pred):
        try:
            return bool(verify(parse(f"$\\boxed{{{gold}}}$"), parse(f"$\\boxed{{{pred}}}$")))
        except Exception:  # noqa: BLE001 -- its failures count as "not equal", like ours
            return False

    return judge, ver


def measure(name: str, judge, rows: list) -> None:
    t0 = time.monotonic()
    verdicts = [judge(row["gold"], row["pred"]) for row in rows]
    wrong = [dict(row, got=got) for row, got in zip(rows, verdicts) if got is not row["equal"]]
    seconds = time.monotonic() - t0
    by_label = {v: [r for r in rows if r["equal"] is v] for v in (True, False)}
    miss = {v: sum(r["equal"] is v for r in wrong) for v in (True, False)}
    print(
        f"{name}: {len(rows) - len(wrong)}/{len(rows)} = {1 - len(wrong) / len(rows):.1%} agreement "
        f"(equal pairs {len(by_label[True]) - miss[True]}/{len(by_label[True])}, "
        f"unequal pairs {len(by_label[False]) - miss[False]}/{len(by_label[False])}; {seconds:.1f} s)"
    )
    for row in wrong:
        print(
            f"    [{row['source']}] gold={row['gold'][:70]!r} pred={row['pred'][:70]!r} "
            f"label={row['equal']} got={row['got']}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--suite",
        action="append",
        metavar="PATH",
        help="a JSON-lines suite of {gold, pred, equal, source}; repeat for several (default: both suites)",
    )
    ap.add_argument("--grader-dir", default=ROOT, help="the folder whose grader.py is graded")
    args = ap.parse_args()
    sys.path.insert(0, os.path.abspath(args.grader_dir))
    judge_ours, mv = ours(), math_verify()
    for path in args.suite or SUITES:
        with open(path, encoding="utf-8") as f:
            rows = [json.loads(line) for line in f if line.strip()]
        n_true = sum(r["equal"] for r in rows)
        print(f"suite: {path}: {len(rows)} cases, {n_true} equal, {len(rows) - n_true} unequal")
        measure(
            f"grader.is_equiv ({os.path.join(os.path.abspath(args.grader_dir), 'grader.py')})",
            judge_ours,
            rows,
        )
        if mv is None:
            print("math-verify: not installed here (see the docstring for a separate environment)")
        else:
            measure(f"math-verify {mv[1]}", mv[0], rows)


if __name__ == "__main__":
    main()
