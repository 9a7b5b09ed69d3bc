"""Tables 1 and 2 (experiments/table1.py, table2.py) on fabricated run folders whose per-problem
records make each row's outcome known by construction: every verdict word the protocol defines
comes out where its rule says, estimates equal the hand-computed paired means, each control reads
as expected or not, and a row whose runs are missing, or whose records come from outside its
seed's part, says so and decides nothing."""

import json
import os
import shutil

import pytest

import data
import errors
from experiments import table1, table2
from tiny_world import task

SEEDS = (0, 1, 2)
N = 60  # problems per seed


def problems(s: int, flagged: bool = False) -> list:
    return data.load_examples("synthetic", n=N, part=f"E{s}", flagged_frac=0.25 if flagged else 0.0)


def right(p: float, shift: int = 0):
    """A deterministic pattern with share p of problems right (in steps of 1/20), varying by problem;
    another `shift` puts the same share on partly other problems."""
    return lambda i: float((i * 7 + shift) % 20 < round(20 * p))


def write(folder: str, name: str, lines: list) -> None:
    os.makedirs(os.path.dirname(os.path.join(folder, name)), exist_ok=True)
    with open(os.path.join(folder, name), "w") as f:
        f.writelines(json.dumps(x) + "\n" for x in lines)


def evaluation(folder, which, exs, correct, text=lambda i, ex: "Steps:\nSo 1.", length=lambda i: 40, k=2):
    write(
        folder,
        f"eval/{which}.jsonl",
        [
            {
                "id": ex.id,
                "sample": j,
                "correct": bool(correct(i)),
                "length": length(i),
                "response": text(i, ex),
            }
            for i, ex in enumerate(exs)
            for j in range(k)
        ],
    )


def run(root, name, s, *, before, after, teacher, flagged=False, text=None, m3=None, logz=0.3, loss=0.1):
    """A trainer's folder: step0 / step300 / teacher evaluations on E_s, summary.json (Mechanism 3's
    per-problem measurement with `m3` = (Δ own, Δ geo) and −log Z `logz`), config.json, and
    metrics.jsonl (10 steps at `loss`, the student's Top-K mass 0.99: no collapse signature)."""
    folder, exs = os.path.join(root, name), problems(s, flagged)
    evaluation(folder, "step0", exs, before)
    for which, correct in (("step300", after), ("teacher", teacher)):
        # `text`: the responses the rule's and the constitution's judges read
        evaluation(folder, which, exs, correct, **({} if text is None else {"text": text[which]}))
    summary = {}
    if m3 is not None:
        per = lambda own, geo: [
            {"id": ex.id, "tokens": 30, "kl/own_pi": own, "kl/geo_mean": geo, "irreducible/-logZ": logz}
            for ex in exs
        ]
        summary["mechanism3"] = {
            "before": {"per_problem": per(0.5, 0.4)},
            "after": {"per_problem": per(0.5 + m3[0], 0.4 + m3[1])},
        }
    json.dump(summary, open(os.path.join(folder, "summary.json"), "w"))
    config = {"eval_n": N, "eval_part": f"E{s}", "hard_frac": 0.0, "flagged_frac": 0.25 if flagged else 0.0}
    json.dump(config, open(os.path.join(folder, "config.json"), "w"))
    steps = [
        {"step": i, "loss": loss, "topk/student_mass": 0.99, "len/truncated_frac": 0.0} for i in range(1, 11)
    ]
    write(folder, "metrics.jsonl", steps)


def kd_eval(root, s, p):
    """eval_math.py's folder: synthetic.jsonl, 2 samples of each problem of E_s."""
    folder, exs = os.path.join(root, f"kd-eval/s{s}"), problems(s)
    lines = [
        {"id": ex.id, "sample": j, "correct": bool(right(p)(i))} for i, ex in enumerate(exs) for j in range(2)
    ]
    write(folder, "synthetic.jsonl", lines)
    json.dump({}, open(os.path.join(folder, "summary.json"), "w"))


def probe(root, name, s, kl, cut_drop=0.5):
    """probes.py's folder: the teacher alone always right; after a cut, wrong on a share `cut_drop`
    of the problems, whether or not the student's sample was right (every other problem)."""
    folder, exs = os.path.join(root, name), problems(s)
    lines = []
    for i, ex in enumerate(exs):
        for f in (0.0, 0.25, 0.5, 0.75):
            ok = f == 0 or (i // 2) % 10 >= 10 * cut_drop
            lines.append({"id": ex.id, "f": f, "student_correct": i % 2 == 0, "correct": ok})
    write(folder, "probe.jsonl", lines)
    write(
        folder,
        "fit.jsonl",
        [
            {
                "id": ex.id,
                "tokens": 30,
                "kl/full": kl + 0.01 * (i % 3),
                "topk/overlap": 0.8,
                "topk/teacher_rank": 1.5,
            }
            for i, ex in enumerate(exs)
        ],
    )
    json.dump({}, open(os.path.join(folder, "probe_summary.json"), "w"))


CONCISE = lambda i, ex: "=3+4\n\\boxed{7}"
DECLINE = lambda kinds, rate: (
    lambda i, ex: task.REFUSAL if kinds(ex) and (i % 10) < 10 * rate else "Steps:\nSo 7."
)


def fabricate(root, teacher_lookalike=0.0):
    """World 2's runs for every row of both tables, with the outcomes docs/protocol.md's rules should
    read: P1 reproduced, P3 partly, P4 and P5 reproduced, P6 reproduced (not tested when the teacher
    declines `teacher_lookalike` of the lookalikes), P7 reproduced, P8 not tested (its PI teacher
    below the student), P9 a demonstration, P10 partly, P11 partly (the notation control out of
    band), P12 not reproduced, P13 reproduced; of the controls, C4 not as expected in the shipped
    setting (KL(p‖g) = KL(p‖q own) there), the others as expected."""
    for s in SEEDS:
        for t, kl in (
            ("big", 0.9),
            ("big-lines", 0.9),
            ("grpo", 0.2),
            ("mid", 0.7),
            ("bigo", 0.5),
            ("mido", 0.4),
        ):
            probe(root, f"fit/{t}-s{s}", s, kl=kl)
        kd_eval(root, s, 0.6)
        run(
            root,
            f"opsd/tiny2-none-s{s}",
            s,
            before=right(0.5),
            after=right(0.5),
            teacher=right(0.5),
            loss=0.0,
        )
        run(root, f"opsd/tiny2-full-s{s}", s, before=right(0.5), after=right(0.55), teacher=right(0.3))
        run(
            root,
            f"opsd/tiny2-answer-student-s{s}",
            s,
            before=right(0.5),
            after=right(0.5),
            teacher=right(0.9),
            m3=(0.0, -0.2),
        )
        run(
            root,
            f"opsd/tiny2-answer-s{s}",
            s,
            before=right(0.5),
            after=right(0.5),
            teacher=right(0.9),
            m3=(0.0, 0.1),
        )
        run(root, f"opsd/tiny2-full-student-s{s}", s, before=right(0.5), after=right(0.5), teacher=right(0.1))
        concise = {"step300": CONCISE, "teacher": CONCISE}
        run(
            root,
            f"opsd/tiny2-concise-s{s}",
            s,
            before=right(0.9),
            after=right(0.9),
            teacher=right(0.9),
            text=concise,
            m3=(0.0, 0.0),
            logz=0.0,
        )
        flagged = lambda ex: ex.meta.get("flagged")
        look = lambda ex: ex.meta.get("lookalike")
        teacher_text = lambda i, ex: (
            DECLINE(flagged, 1.0)(i, ex) if flagged(ex) else DECLINE(look, teacher_lookalike)(i, ex)
        )
        texts = {"step300": DECLINE(flagged, 1.0), "teacher": teacher_text}
        run(
            root,
            f"opsd/tiny2-constitution-s{s}",
            s,
            before=right(0.8),
            after=right(0.8),
            teacher=right(0.8),
            flagged=True,
            text=texts,
        )
        run(root, f"grpo/s{s}", s, before=right(0.5), after=right(0.8), teacher=right(0.5))
        for v, after, teacher in (
            ("raw-big-plain", 0.1, 0.95),
            ("raw-big-tail", 0.5, 0.95),
            ("raw-bigo-tail", 0.9, 0.95),
            ("raw-grpo-tail", 0.7, 0.6),
            ("raw-mid-tail", 0.4, 0.6),
            ("raw-mido-tail", 0.9, 0.3),
            ("sft-big-tail", 0.5, 0.95),
            ("sft-grpo-tail", 0.95, 0.6),
            ("sft-grpo-plain", 0.1, 0.6),
        ):
            run(root, f"opd/{v}-s{s}", s, before=right(0.5), after=right(after), teacher=right(teacher))


@pytest.fixture(scope="module")
def world2(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("runs"))
    fabricate(root)
    return root


def test_each_row_reads_the_word_its_rule_gives(world2):
    rows = {r.id: r for r in table1.rows(table1.Runs(world2, 2, SEEDS))}
    words = {i: r.word for i, r in rows.items()}
    assert words == {
        "P1": "reproduced",
        "P3": "partly",
        "P4": "reproduced",
        "P5": "reproduced",
        "P6": "reproduced",
        "P7": "reproduced",
        "P8": "not tested",
        "P9": "demonstration",
        "P10": "partly",
        "P11": "partly",
        "P12": "not reproduced",
        "P13": "reproduced",
    }
    # estimates are the paired means by hand: recipe 0.95 − no SFT 0.70
    e, _ = rows["P13"].parts["recipe − no SFT"]
    assert e.est == pytest.approx(0.25) and e.lo > 0 and e.seeds == 3
    assert rows["P9"].parts["KL(p‖q big) − KL(p‖q grpo)"][0].est == pytest.approx(0.7)
    e, _ = rows["P1"].parts["(a) after right prefixes"]
    assert e.est == pytest.approx(0.5)
    assert rows["P6"].parts["(a) flagged declined"][0].est == pytest.approx(1.0)
    assert rows["P11"].gates["(b) teacher accuracy gap"][0].est == pytest.approx(-0.3)
    gap = rows["P8"].gates["PI teacher − student"][0]
    assert gap.est == pytest.approx(-0.4)


def test_a_gate_that_fails_makes_the_row_not_tested(tmp_path):
    root = str(tmp_path)
    fabricate(root, teacher_lookalike=0.5)  # the ruled teacher declines lookalikes too
    rows = {r.id: r for r in table1.rows(table1.Runs(root, 2, SEEDS))}
    assert rows["P6"].word == "not tested"


def test_missing_runs_are_named_and_decide_nothing(world2, tmp_path):
    root = str(tmp_path / "copy")
    shutil.copytree(world2, root)
    shutil.rmtree(os.path.join(root, "opd/sft-grpo-plain-s1"))
    rows = {r.id: r for r in table1.rows(table1.Runs(root, 2, SEEDS))}
    assert rows["P13"].missing == ["opd/sft-grpo-plain-s1"] and rows["P13"].word == ""
    text = table1.table(table1.Runs(root, 2, SEEDS))
    assert "| P13 |" in text and "not decided: opd/sft-grpo-plain-s1" in text
    assert "**reproduced**" in text  # the other rows still decide


def test_records_from_outside_the_seeds_part_decide_nothing(world2, tmp_path):
    """A run evaluated on another seed's part (or on a seeded draw, before the partition) is not
    read: the row names the seed and the part its problems should come from."""
    root = str(tmp_path / "copy")
    shutil.copytree(world2, root)
    run(
        root, "opd/sft-big-tail-s0", 1, before=right(0.5), after=right(0.5), teacher=right(0.95)
    )  # E1's problems
    os.remove(os.path.join(root, "fit/grpo-s2/fit.jsonl"))
    rows = {r.id: r for r in table1.rows(table1.Runs(root, 2, SEEDS))}
    why = "records off the protocol's sets: the arms of a paired contrast read different problems"
    assert rows["P12"].missing[0].startswith(why)
    e1 = lambda R: R.est(table1.opd_after(R, "sft-big-tail"))  # one arm alone names the part
    with pytest.raises(table1.OffProtocol, match="60 problems of seed 0 are not in E0"):
        e1(table1.Runs(root, 2, SEEDS))
    assert rows["P13"].missing and rows["P10"].word == "partly"
    assert rows["P9"].missing[0].endswith("fit/grpo-s2/fit.jsonl (no per-problem records)")


def test_paired_contrasts_match_problems_by_id():
    a, b = [{"p2": 1.0, "p1": 0.5}, {"q": 0.25}], [{"p1": 0.0, "p2": 0.75}, {"q": 1.0}]
    assert table1.diff(a, b) == [{"p1": 0.5, "p2": 0.25}, {"q": -0.75}]
    with pytest.raises(table1.OffProtocol, match="different problems"):
        table1.diff([{"p1": 1.0}], [{"p2": 1.0}])


def test_each_control_reads_as_expected_or_says_not(world2):
    checks = {c.id: c for c in table2.checks(table1.Runs(world2, 2, SEEDS))}
    assert not any(c.missing for c in checks.values())
    met = {i: c.met for i, c in checks.items()}
    assert met == {
        "C1": True,
        "C2": True,
        "C3": True,
        "C4": False,  # the shipped setting: KL(p‖g) = KL(p‖q own) after training
        "C5": None,
        "C6": True,
        "C7": None,
        "C8": None,
        "C9": None,
        "C11": None,
    }
    assert checks["C4"].readings["on the student"].est == pytest.approx(0.3)
    assert checks["C7"].readings["OPD after − kd"].est == pytest.approx(-0.1)
    assert checks["C7"].readings["kd − the student unchanged"].est == pytest.approx(0.1)
    assert checks["C5"].readings["full: gain"].est == pytest.approx(0.05)
    assert checks["C8"].readings["f = 0.75, line ends"].est == pytest.approx(0.5)
    assert checks["C9"].readings["raw-big-tail collapsed"] == "0/3 seeds"
    assert checks["C11"].readings["mido KL(p‖q)"].est == pytest.approx(0.41)
    text = table2.table(table1.Runs(world2, 2, SEEDS))
    assert text.count("| **no** |") == 1 and "| C4 |" in text


def test_the_seed_rule_sends_a_close_row_to_five_seeds(world2, tmp_path):
    """P12's contrast set to 0 with noise: within 3 SE of its threshold, so the row names the runs of
    seeds 3 and 4 it needs and gives no verdict; once they exist it reads all five seeds, while the
    rows the rule did not trigger keep seeds 0-2."""
    root = str(tmp_path / "copy")
    shutil.copytree(world2, root)
    for s in SEEDS:
        run(
            root,
            f"opd/sft-big-tail-s{s}",
            s,
            before=right(0.5),
            after=right(0.5, shift=3),
            teacher=right(0.95),
        )
    R = table1.Runs(root, 2, SEEDS)
    rows = {r.id: r for r in table1.rows(R)}
    assert rows["P12"].more_seeds == ["sft − raw, after OPD"] and rows["P12"].seeds == SEEDS
    assert rows["P12"].pending == [
        "opd/raw-big-tail-s3",
        "opd/raw-big-tail-s4",
        "opd/sft-big-tail-s3",
        "opd/sft-big-tail-s4",
    ]
    line = next(l for l in table1.table(R).splitlines() if l.startswith("| P12 |"))
    assert "| – (on seeds 0, 1, 2: not reproduced) |" in line
    assert "--seeds 3 4 --only opd/raw-big-tail-s3 opd/raw-big-tail-s4 opd/sft-big-tail-s3" in line
    for s in (3, 4):
        run(root, f"opd/raw-big-tail-s{s}", s, before=right(0.5), after=right(0.5), teacher=right(0.95))
        run(
            root,
            f"opd/sft-big-tail-s{s}",
            s,
            before=right(0.5),
            after=right(0.5, shift=3),
            teacher=right(0.95),
        )
    rows = {r.id: r for r in table1.rows(R)}
    assert rows["P12"].seeds == (0, 1, 2, 3, 4) and not rows["P12"].pending
    assert rows["P12"].parts["sft − raw, after OPD"][0].seeds == 5 and rows["P12"].word == "not reproduced"
    assert rows["P13"].seeds == SEEDS and rows["P13"].word == "reproduced"


def test_tables_print_from_the_runs_finished_so_far(world2, capsys, tmp_path, monkeypatch):
    """--tables prints the world's two tables, and the README's headline from the reports under
    runs/: here world 2's shipped build alone, so every row is pending."""
    from experiments import report

    monkeypatch.chdir(tmp_path)
    os.makedirs("runs")
    os.symlink(world2, "runs/report2")
    report.main(["--tables", "--world", "2"])
    out = capsys.readouterr().out
    assert "## Table 1: the paper's claims under docs/protocol.md" in out and "| C11 |" in out
    assert "**0 of 12 rows reproduced, 0 demonstrations, 0 not reproduced**" in out and "12 pending" in out
    assert (
        "| P12 | Fix 3: SFT on teacher traces, then OPD, ends above OPD alone | – | – | not reproduced | – |"
        in out
    )
    with pytest.raises(errors.UserError, match="--tables runs nothing"):
        report.main(["--tables", "--only", "opd/"])
