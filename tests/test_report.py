"""Tests of experiments/report.py and experiments/results.py: the runner respects dependencies,
reuses finished runs and reports a failed one; the writer's verdicts follow their rules on runs
whose outcome is known by construction, and its means ± std agree with Python's statistics module."""

import json
import os
import statistics

import pytest

import errors
from experiments import claims, mechanism2, plan, report, results, settings

# -----------------------------------------------------------------------------
# The runner, on a stand-in script that records the order and writes the run's done file

SCRIPT = """
import json, os, sys
out = sys.argv[sys.argv.index("--out") + 1]
os.makedirs(out, exist_ok=True)
with open(os.path.join(os.path.dirname(os.path.dirname(out)), "order.txt"), "a") as f:
    f.write(os.path.basename(out) + "\\n")
if "--fail" in sys.argv:
    sys.exit(3)
json.dump({"argv": sys.argv[1:]}, open(os.path.join(out, "summary.json"), "w"))
"""


def test_runner_orders_by_dependency_reuses_finished_runs_and_reports_failures(tmp_path):
    script = tmp_path / "fake.py"
    script.write_text(SCRIPT)
    root = str(tmp_path / "root")
    runs = [
        plan.Run("x/c", [str(script), "--from", "{root}/x/a"], needs=("x/a", "x/b"), cost=9),
        plan.Run("x/a", [str(script)], cost=1),
        plan.Run("x/b", [str(script)], needs=("x/a",), cost=5),
    ]
    report.execute(runs, root, jobs=2)
    order = (tmp_path / "root" / "order.txt").read_text().split()
    assert order == ["a", "b", "c"]  # c is the costliest but needs both others
    c = json.load(open(os.path.join(root, "x", "c", "summary.json")))
    assert c["argv"][:2] == ["--from", f"{root}/x/a"] and c["argv"][-2:] == ["--threads", "1"]
    report.execute(runs, root, jobs=2)  # everything finished: nothing runs again
    assert (tmp_path / "root" / "order.txt").read_text().split() == order
    # a failed run stops the runs that need it, and only those
    more = [
        plan.Run("x/d", [str(script), "--fail"], cost=9),
        plan.Run("x/e", [str(script)], needs=("x/d",)),
        plan.Run("x/f", [str(script)], needs=("x/e",)),
        plan.Run("x/g", [str(script)]),
    ]
    with pytest.raises(
        RuntimeError, match=r"1 run\(s\) failed: x/d \(their logs: .*x/d.log.*need one: x/e, x/f;"
    ):
        report.execute(runs + more, root, jobs=1)
    assert os.path.exists(os.path.join(root, "x", "g", "summary.json"))
    assert not os.path.exists(os.path.join(root, "x", "e"))
    with pytest.raises(ValueError, match="not in the plan"):
        report.execute([plan.Run("y", [str(script)], needs=("z",))], root, jobs=1)


def test_resume_flag_only_with_a_complete_checkpoint_and_nothing_deleted(tmp_path):
    root = str(tmp_path)
    r = plan.Run("opd/a", ["train_opd.py"])
    a = tmp_path / "opd" / "a"
    os.makedirs(a / "ckpt")
    (a / "ckpt.tmp" / "train_state.pt").parent.mkdir()
    (a / "ckpt.tmp" / "train_state.pt").write_text("x")  # a write cut before its manifest
    (a / "stale.txt").write_text("x")
    assert "--resume" not in report.command(r, root)
    assert (a / "stale.txt").exists(), "the report deleted a run folder: only the run may clear its own"
    for folder in ("ckpt.old", "ckpt"):  # a complete checkpoint anywhere in the swap
        os.makedirs(a / folder, exist_ok=True)
        (a / folder / "manifest.json").write_text("{}")
        assert report.command(r, root)[-1] == "--resume"
        os.remove(a / folder / "manifest.json")
    (a / "ckpt" / "train_state.pt").write_text("x")  # an older version's checkpoint: adopted on resume
    assert report.command(r, root)[-1] == "--resume"


def test_a_run_another_live_process_holds_is_not_started_again(tmp_path):
    import fcntl

    os.makedirs(tmp_path / "x" / "a")
    with open(tmp_path / "x" / "a" / ".lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(errors.UserError, match="x/a: another live process"):
            report.execute([plan.Run("x/a", ["train_opd.py"])], str(tmp_path), jobs=1)
    assert os.listdir(tmp_path / "x" / "a") == [".lock"]


def test_a_torn_timing_file_starts_the_wall_time_again(tmp_path, capsys):
    path = tmp_path / "timing.json"
    path.write_text('{"wall_s": 12')
    assert report.read_timing(str(path)) == {"wall_s": 0.0}
    assert "torn" in capsys.readouterr().err
    path.write_text('{"wall_s": 12.5, "jobs": 2}')
    assert report.read_timing(str(path))["wall_s"] == 12.5


# -----------------------------------------------------------------------------
# The writer, on fabricated runs whose verdicts are known by construction


def evald(a, boxed=0.0, length=22.0, **world2):
    """An evaluation summary; the second world's keys (tiny_world.task.measures) default to a plain model."""
    w2 = {
        "format/concise": boxed,
        "style/rewrite": 1.0,
        "style/operation": 0.0,
        "refusal/others": 0.0,
        "acc/others": a,
        **world2,
    }
    return {
        "acc/pass@1": a,
        "acc/pass@1_ci": [a - 0.05, a + 0.05],
        "len/mean": length,
        "len/truncated_frac": 0.0,
        "rep/ratio": 0.05,
        "format/boxed_only": boxed,
        **w2,
    }


def write_run(root, name, summary, mass=0.99, trunc=0.0, loss=0.1, config=None):
    d = os.path.join(root, name)
    os.makedirs(d, exist_ok=True)
    json.dump(summary, open(os.path.join(d, "summary.json"), "w"))
    json.dump(config or {}, open(os.path.join(d, "config.json"), "w"))
    with open(os.path.join(d, "metrics.jsonl"), "w") as f:
        for step in range(1, 21):
            m = 0.99 if step < 8 else mass  # a collapsing run leaves its Top-K at step 8
            f.write(
                json.dumps(
                    {
                        "step": step,
                        "loss": loss,
                        "len/mean": 22.0,
                        "len/truncated_frac": trunc,
                        "topk/student_mass": m,
                        "topk/overlap": 0.5,
                        "kl/full": 0.3,
                        "rep/ratio": 0.05,
                        "hedge/per_1k_words": 0.0,
                    }
                )
                + "\n"
            )


def write_collapse_run(root, name, loss, k, lr, steps, onset=None, acc_end=0.45, n=100):
    """A collapse-protocol run (experiments/plan.py's names and flags): a constant `lr`, the student's
    Top-K mass 0.99 until step `onset` and 0.5 from it, held-out accuracy 0.4 at step 0 and
    `acc_end` at every evaluation from the onset on (from step 20 without one); an evaluation every
    COLLAPSE_EVAL steps, each with its per-problem records (the first acc x n problems right)."""
    d = os.path.join(root, name)
    os.makedirs(os.path.join(d, "eval"), exist_ok=True)
    json.dump({"loss": loss, "k": k, "lr": lr}, open(os.path.join(d, "config.json"), "w"))
    json.dump(
        {"student_before": evald(0.4), "student_after": evald(acc_end)},
        open(os.path.join(d, "summary.json"), "w"),
    )
    lines = []
    for step in range(steps + 1):
        if step:
            mass = 0.5 if onset is not None and step >= onset else 0.99
            lines.append(
                {"step": step, "loss": 0.1, "lr": lr, "topk/student_mass": mass, "len/truncated_frac": 0.0}
                | {"len/mean": 22.0, "topk/overlap": 0.5, "topk/teacher_rank": 1.5, "kl/full": 0.3}
                | {"rep/ratio": 0.05, "hedge/per_1k_words": 0.0}
            )
        if step % settings.COLLAPSE_EVAL == 0 or step == steps:
            a = 0.4 if step < (onset if onset is not None else 20) else acc_end
            lines.append({"step": step, "eval": {"student": {"acc/pass@1": a}}})
            with open(os.path.join(d, "eval", f"step{step}.jsonl"), "w") as f:
                for i in range(n):
                    f.write(json.dumps({"id": f"p{i}", "sample": 0, "correct": i < round(a * n)}) + "\n")
    with open(os.path.join(d, "metrics.jsonl"), "w") as f:
        f.write("".join(json.dumps(x) + "\n" for x in lines))


def fabricate_collapse(root, scale, s, fixes_hold=True):
    """The protocol's runs of seed `s`: plain Top-K collapses (K = 1 at step 10, larger K later, the
    onsets at half the rate at twice the steps), the other losses hold and end above plain (unless
    not `fixes_hold`: then they collapse too)."""
    n, K = plan.collapse_steps(scale), max(scale["collapse_ks"])
    for i, k in enumerate(sorted(scale["collapse_ks"])):
        on = 10 + 20 * i
        write_collapse_run(
            root, f"collapse/topk_plain-k{k}-s{s}", "topk_plain", k, settings.COLLAPSE_LR, n, on, 0.1
        )
        write_collapse_run(
            root,
            f"collapse/topk_plain-k{k}-lr2-s{s}",
            "topk_plain",
            k,
            settings.COLLAPSE_LR2,
            2 * n,
            2 * on,
            0.1,
        )
        for loss in settings.COLLAPSE_LOSSES[1:]:
            steps = n * scale["collapse_long"] if loss in settings.LONG_LOSSES and k == K else n
            write_collapse_run(
                root,
                f"collapse/{loss}-k{k}-s{s}",
                loss,
                k,
                settings.COLLAPSE_LR,
                steps,
                None if fixes_hold else on,
                0.45 if fixes_hold else 0.1,
            )


def fabricate(root, scale, after, mid_acc=0.47, world=1, declined=(0.9, 0.9)):
    """Every run of the plan; OPD accuracy after training from `after[variant][seed]`; the Fix 2
    control teacher scores `mid_acc` (the GRPO teacher 0.45). World 2: the constitution's student
    declines `declined[seed]` of the flagged prompts after OPSD."""
    opsd = settings.WORLDS[world]["opsd"]
    for s in scale["seeds"]:
        fabricate_collapse(root, scale, s)
        m3 = lambda own, geo, z: {"after": {"kl/own_pi": own, "kl/geo_mean": geo, "irreducible/-logZ": z}}
        write_run(
            root,
            f"opsd/{opsd['rule']}-s{s}",
            {
                "teacher": evald(0.2, 1.0, 10.8),
                "student_before": evald(0.9),
                "student_after": evald(0.2 + 0.01 * s, 0.95, 10.9),
                "mechanism3": m3(0.1, 0.1, 0.0),
            },
            config={"pi": "system_prompt"},
        )
        write_run(
            root,
            f"opsd/{opsd['answer']}-s{s}",
            {
                "teacher": evald(0.93),
                "student_before": evald(0.6),
                "student_after": evald(0.61),
                "mechanism3": m3(0.3, 0.1, 0.7),
            },
            config={"pi": "answer_only"},
        )
        # gains: "not reproduced"
        write_run(
            root,
            f"opsd/{opsd['full']}-s{s}",
            {"teacher": evald(0.2, 0.9), "student_before": evald(0.6), "student_after": evald(0.7)},
            config={"pi": "full"},
        )
        write_run(
            root,
            f"opsd/{opsd['none']}-s{s}",
            {"teacher": evald(0.9), "student_before": evald(0.9), "student_after": evald(0.89)},
            loss=0.0,
            config={"pi": "none"},
        )
        if world == 2:
            write_run(
                root,
                f"opsd/{opsd['constitution']}-s{s}",
                {
                    "teacher": evald(0.5, **{"refusal/flagged": 0.97, "acc/others": 0.85}),
                    "student_before": evald(0.6, **{"refusal/flagged": 0.0, "acc/others": 0.85}),
                    "student_after": evald(
                        0.55, **{"refusal/flagged": declined[s], "refusal/others": 0.01, "acc/others": 0.84}
                    ),
                },
                config={"pi": "system_prompt"},
            )
            write_run(
                root,
                f"select/s{s}",
                {
                    "step": 500 + 100 * s,
                    "model_selection_acc": 0.45,
                    "snapshot_selection_acc": 0.46,
                    "selection": {"n": 300, "part": "S"},
                },
            )
        write_run(root, f"sft/s{s}", {})
        if world == 2:
            write_run(root, f"sft-grpo/s{s}", {})
        write_run(root, f"grpo/s{s}", {"student_before": evald(0.40), "student_after": evald(0.45)})
        for t, kl in (("big", 0.9), ("mid", 0.8), ("grpo", 0.2)):
            d = os.path.join(root, f"fit/{t}-s{s}")
            os.makedirs(d, exist_ok=True)
            # lower overall, not after right prefixes
            probe = [
                {"who": "student alone", "f": None, "acc": 0.4},
                {
                    "who": "teacher alone",
                    "f": 0.0,
                    "acc": 0.9,
                    "acc_student_right": 0.95,
                    "acc_student_wrong": 0.87,
                },
                {
                    "who": "teacher after student prefix",
                    "f": 0.5,
                    "acc": 0.6 + 0.1 * s,
                    "acc_student_right": 1.0,
                    "acc_student_wrong": 0.4,
                },
            ]
            json.dump(
                {
                    "probe": probe,
                    "fit": {
                        "kl/full": kl + 0.01 * s,
                        "kl/reverse_est": kl,
                        "topk/overlap": 0.5,
                        "topk/teacher_rank": 1.5,
                        "tokens": 100,
                    },
                },
                open(os.path.join(d, "probe_summary.json"), "w"),
            )
        for v in settings.opd_variants(world):
            write_run(
                root,
                f"opd/{v}-s{s}",
                {
                    "teacher": evald(
                        {"grpo": 0.45, "mid": mid_acc, "mido": mid_acc}.get(v.split("-")[1], 0.9)
                    ),
                    "student_before": evald(0.4),
                    "student_after": evald(after.get(v, after["raw-big-tail"])[s]),
                },
            )


def test_verdicts_follow_their_rules_and_numbers_are_mean_and_std(tmp_path):
    scale = dict(settings.SCALES["quick"], seeds=(0, 1))
    after = {
        "raw-big-plain": [0.1, 0.2],
        "raw-big-tail": [0.5, 0.52],
        "sft-big-tail": [0.6, 0.5],
        "raw-grpo-tail": [0.45, 0.44],
        "sft-grpo-tail": [0.55, 0.56],
        "raw-mid-tail": [0.40, 0.46],
    }
    root = str(tmp_path / "runs")
    fabricate(root, scale, after)
    text = results.write_results(
        root,
        scale,
        str(tmp_path / "R.md"),
        str(tmp_path / "figs"),
        {"command": "test", "run_command": "test", "runs": 0, "hardware": "none", "jobs": 1, "wall": "0 min"},
    )
    verdicts = {}
    for line in text.splitlines():
        if line.startswith("| ") and line.rstrip().endswith("** |"):
            cells = [c.strip() for c in line.strip("|").split(" | ")]
            verdicts[cells[0]] = cells[-1].strip("*")
    v = lambda start: next(val for key, val in verdicts.items() if key.startswith(start))
    assert v("Mechanism 2: plain") == "reproduced"  # mass 0.5 and accuracy 0.4 -> 0.1 in both seeds
    # 5-step mean below 0.9 from the first step at 0.5: K = 1 at step 10, K = 20 at 30
    assert v("Mechanism 2: the smaller K") == "reproduced"
    assert v("Fix 1: stop-gradient Top-20 prevents") == "reproduced"
    assert v("Fix 1 (alternative)") == "reproduced" and v("Top-K with a tail bucket") == "reproduced"
    assert v("Fix 1: stop-gradient Top-20 stays stable") == "reproduced"
    # the onsets at half the rate come at twice the steps: the same cumulative learning rate
    assert "K = 1: 1.00 [1.00, 1.00] (2/2 seeds); K = 20: 1.00 [1.00, 1.00] (2/2 seeds)." in text
    assert os.path.exists(tmp_path / "figs" / "collapse_onsets.png") and "(figs/collapse_onsets.png)" in text
    assert "0/2 stop-gradient runs still carry the signature" in text  # the fixes hold their mass at 0.99
    assert "False alarms on: none. Misses: none." in text
    assert v("OPSD internalises") == "reproduced" and v("... with no loss") == "not reproduced"
    assert v("OPSD with per-instance PI (the answer)") == "reproduced"
    assert v("OPSD with per-instance PI (a worked") == "not reproduced"  # +0.1 in every seed
    assert v("Mechanism 3") == "reproduced" and v("Control") == "reproduced"
    assert v("Mechanism 1") == "partly" and v("Fix 2: a GRPO") == "reproduced"
    assert v("Fix 2: ... and the better") == "not reproduced"
    # teachers 0.47 and 0.45 matched; 0.45 > 0.40 but 0.44 < 0.46
    assert v("Fix 2 at similar accuracy") == "partly"
    assert v("Fix 3") == "partly"  # 0.6 > 0.5 but 0.5 < 0.52
    assert v("The recipe") == "reproduced"
    # a mean ± std in the text, against the statistics module on the fabricated values
    m, s = statistics.mean(after["sft-grpo-tail"]), statistics.stdev(after["sft-grpo-tail"])
    assert f"recipe {m:.3f} ± {s:.3f}" in text
    assert os.path.exists(tmp_path / "figs" / "report_collapse.png") and "(figs/report_collapse.png)" in text
    # the README's headline: the same verdicts, written between its markers, the rest kept
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\n{results.HEADLINE[0]}\nstale\n{results.HEADLINE[1]}\n\n## next\n")
    results.write_results(
        root,
        scale,
        str(tmp_path / "R.md"),
        str(tmp_path / "figs"),
        {"command": "test", "run_command": "test", "runs": 0, "hardware": "none", "jobs": 1, "wall": "0 min"},
        readme=str(readme),
    )
    head = readme.read_text()
    assert head.startswith("# title\n") and head.rstrip().endswith("## next") and "stale" not in head
    rows = [line for line in head.splitlines() if line.startswith("| ") and line.endswith("** |")]
    assert {r.split(" | ")[0][2:]: r.split(" | ")[1].strip("* |") for r in rows} == verdicts
    n = sum(x == "reproduced" for x in verdicts.values())
    assert f"**{n} of {len(verdicts)} claims reproduced" in head and "(R.md)" in head
    with pytest.raises(ValueError, match="has no block to write"):
        results.write_headline(str(tmp_path / "R.md"), "x", [])


def test_the_signature_is_read_from_the_metrics(tmp_path):
    root = str(tmp_path)
    write_run(root, "a", {}, mass=0.5)  # leaves its Top-K at step 8
    write_run(root, "b", {}, mass=0.95)  # never below 0.9
    assert claims.collapsed(root, "a") and not claims.collapsed(root, "b")


def test_fixes_are_judged_only_where_plain_collapses_and_fail_when_they_collapse_too(tmp_path):
    scale = dict(settings.SCALES["quick"], seeds=(0, 1))
    root = str(tmp_path / "runs")
    for s in scale["seeds"]:
        fabricate_collapse(root, scale, s, fixes_hold=False)
    os.makedirs(tmp_path / "figs")
    R = claims.Report(root, scale, "figs", str(tmp_path / "figs"))
    mechanism2.mechanism2(R)
    got = {c[0]: c[4] for c in R.claims}
    assert got["Fix 1: stop-gradient Top-20 prevents the collapse"] == "not reproduced"
    assert got["Fix 1: stop-gradient Top-20 stays stable over 2x the budget"] == "not reproduced"
    assert "2/2 stop-gradient runs still carry the signature" in "\n".join(R.body)
    # plain Top-1 does not collapse in one seed: no fix is judged at K = 1
    os.remove(os.path.join(root, "collapse/topk_plain-k1-s1/metrics.jsonl"))
    write_collapse_run(
        root, "collapse/topk_plain-k1-s1", "topk_plain", 1, settings.COLLAPSE_LR, plan.collapse_steps(scale)
    )
    R = claims.Report(root, scale, "figs", str(tmp_path / "figs"))
    mechanism2.mechanism2(R)
    body = "\n".join(R.body)
    assert "| Fix 1: stop-gradient | 1 | plain Top-1 collapses in 1/2 seeds | not tested |" in body
    got = {c[0]: c[4] for c in R.claims}
    assert got["Mechanism 2: the smaller K, the sooner plain Top-K collapses"] == "partly"


def test_fix2_control_is_not_judged_when_its_accuracy_is_not_matched(tmp_path):
    scale = dict(settings.SCALES["quick"], seeds=(0, 1))
    after = {
        "raw-big-plain": [0.1, 0.2],
        "raw-big-tail": [0.5, 0.52],
        "sft-big-tail": [0.6, 0.5],
        "raw-grpo-tail": [0.45, 0.44],
        "sft-grpo-tail": [0.55, 0.56],
        "raw-mid-tail": [0.10, 0.12],
    }
    root = str(tmp_path / "runs")
    fabricate(root, scale, after, mid_acc=0.06)  # GRPO wins every seed, but against a far weaker teacher
    text = results.write_results(
        root,
        scale,
        str(tmp_path / "R.md"),
        str(tmp_path / "figs"),
        {"command": "test", "run_command": "test", "runs": 0, "hardware": "none", "jobs": 1, "wall": "0 min"},
    )
    row = next(line for line in text.splitlines() if line.startswith("| Fix 2 at similar accuracy"))
    assert row.endswith("| **not tested** |")
    assert ", 1 not tested**" in text and "0.390 below the GRPO teacher's" in text


def test_world2_plan_and_verdicts(tmp_path):
    """The second world's plan reads tiny2/ and chooses Fix 2's control per seed after its GRPO run
    and the far teacher's snapshots; its writer judges the conciseness rule by concise responses and
    the constitution by declines, over-refusal and accuracy on the other problems."""
    scale = dict(settings.SCALES["quick"], seeds=(0, 1))
    runs = {r.name: r for r in plan.plan(scale, world=2)}
    assert runs["select/s1"].needs == ("far", "grpo/s1") and "--match" in runs["select/s1"].argv
    assert (
        runs["opd/raw-mid-tail-s1"].needs == ("select/s1",)
        and "{root}/select/s1/teacher" in runs["opd/raw-mid-tail-s1"].argv
    )
    assert all(
        r.argv[1:3] == ["--preset", "tiny2"]
        for n, r in runs.items()
        if n.startswith(("opd/", "collapse/", "grpo/"))
    )
    assert runs["fit/big-s0"].argv[:5] == [
        "probes.py",
        "--model",
        "tiny2/student",
        "--probe-teacher",
        "tiny2/teacher",
    ]
    # the recipe's student learns from its own (GRPO) teacher's traces; Fix 3's from the big teacher's
    recipe, fix3 = runs["opd/sft-grpo-tail-s1"], runs["opd/sft-big-tail-s1"]
    assert recipe.needs == ("sft-grpo/s1", "grpo/s1") and "{root}/sft-grpo/s1/final" in recipe.argv
    assert fix3.needs == ("sft/s1",) and "{root}/sft/s1/final" in fix3.argv
    teacher_of = lambda r: r.argv[r.argv.index("--teacher") + 1]
    assert teacher_of(runs["sft-grpo/s1"]) == "{root}/grpo/s1/ckpt" and runs["sft-grpo/s1"].needs == (
        "grpo/s1",
    )
    assert teacher_of(runs["sft/s1"]) == "tiny2/teacher"
    assert not any(n.startswith("sft-grpo/") for n in (r.name for r in plan.plan(scale, world=1)))
    presets = [*settings.WORLDS[2]["opsd"].values(), *settings.WORLDS[2]["opsd_student"]]
    assert {n for n in runs if n.startswith("opsd/")} == {f"opsd/{p}-s{s}" for p in presets for s in (0, 1)}
    # docs/protocol.md's runs read their seed's part of the eval split, 4 samples a problem at full
    # scale (1 in the quick report); docs/collapse.md's keep their own evaluation
    flags = lambda r: " ".join(r.argv)
    full = {r.name: r for r in plan.plan(settings.SCALES["full"], world=2)}
    for name in ("opsd/tiny2-answer-student-s1", "opsd/tiny2-concise-s1", "grpo/s1", "opd/raw-big-tail-s1"):
        assert "--eval-part E1 --eval-k 4" in flags(full[name]) and "--eval-k 1" in flags(runs[name])
    assert "--synthetic-part E1 --synthetic-n 300 --k 4" in flags(full["kd-eval/s1"])
    assert all(
        "--synthetic-part E1" in flags(r) for n, r in full.items() if n.startswith("fit/") and "s1" in n
    )
    assert not any("--eval-part" in flags(r) for n, r in runs.items() if n.startswith("collapse/"))
    # the far teacher in the student's notation, its matched snapshot, and OPD and the probe from each
    assert runs["far-o"].argv[-2:] == ["--style", "O"] and runs["select-o/s1"].needs == ("far-o", "grpo/s1")
    assert teacher_of(runs["opd/raw-bigo-tail-s1"]) == "{root}/far-o/final"
    assert teacher_of(runs["opd/raw-mido-tail-s1"]) == "{root}/select-o/s1/teacher"
    assert (
        "{root}/select-o/s1/teacher" in runs["fit/mido-s1"].argv and "lines" in runs["fit/big-lines-s1"].argv
    )
    # the recipe with the biased loss; OPD's baseline at the OPD run's teacher tokens, then its evaluation
    plain = runs["opd/sft-grpo-plain-s1"]
    assert plain.needs == recipe.needs and plain.argv[plain.argv.index("--loss") + 1] == "topk_plain"
    assert (
        runs["kd/s1"].needs == ("opd/raw-big-tail-s1",) and "{root}/opd/raw-big-tail-s1" in runs["kd/s1"].argv
    )
    assert runs["kd-eval/s1"].needs == ("kd/s1",) and "{root}/kd/s1/final" in runs["kd-eval/s1"].argv
    world1 = [r.name for r in plan.plan(scale, world=1)]
    assert "opd/sft-grpo-plain-s1" in world1 and not any(("bigo" in n or "mido" in n) for n in world1)
    after = {
        "raw-big-plain": [0.1, 0.2],
        "raw-big-tail": [0.5, 0.52],
        "sft-big-tail": [0.6, 0.5],
        "raw-grpo-tail": [0.45, 0.44],
        "sft-grpo-tail": [0.55, 0.56],
        "raw-mid-tail": [0.40, 0.46],
    }
    root = str(tmp_path / "runs")
    fabricate(root, scale, after, world=2, declined=(0.9, 0.7))  # seed 1 declines too few
    text = results.write_results(
        root,
        scale,
        str(tmp_path / "R.md"),
        str(tmp_path / "figs"),
        {"command": "test", "run_command": "test", "runs": 0, "hardware": "none", "jobs": 1, "wall": "0 min"},
        world=2,
    )
    # docs/protocol.md's Table 1 is there; runs without per-problem records on E_s decide none of it
    table = text.split("## Table 1: the paper's claims under docs/protocol.md")[1].split("\n## ")[0]
    assert table.count("| not decided: ") == 12 and "**" not in table
    row = lambda start: next(l for l in text.splitlines() if l.startswith("| " + start))
    assert row("OPSD internalises a constitution").endswith("| **partly** |")
    assert "flagged declined 0.00 ± 0.00 → 0.80 ± 0.14" in row("OPSD internalises a constitution")
    # the rule's format is the concise share here (0.95 in the fabricated runs): reproduced
    assert row("OPSD internalises a shared rule").endswith("| **reproduced** |")
    assert "concise responses" in row("OPSD internalises a shared rule")
    assert "steps 500, 600" in text and text.startswith("# Results: the paper's claims in tiny world 2")


def test_world2_report_shows_the_first_worlds_verdict_beside_each_claim(tmp_path):
    """RESULTS.md (world 2) carries RESULTS_tiny1.md's verdict of every claim as a last column, and
    names the claims only the first world reproduces, in the text and in the README's headline."""
    scale = dict(settings.SCALES["quick"], seeds=(0, 1))
    after = {
        "raw-big-plain": [0.1, 0.2],
        "raw-big-tail": [0.5, 0.52],
        "sft-big-tail": [0.6, 0.6],
        "raw-grpo-tail": [0.45, 0.44],
        "sft-grpo-tail": [0.55, 0.56],
        "raw-mid-tail": [0.40, 0.46],
    }
    meta = {
        "command": "test",
        "run_command": "test",
        "runs": 0,
        "hardware": "none",
        "jobs": 1,
        "wall": "0 min",
    }
    fabricate(str(tmp_path / "r1"), scale, after)  # Fix 3: 0.6 > 0.5 and 0.6 > 0.52, reproduced
    one = results.write_results(
        str(tmp_path / "r1"), scale, str(tmp_path / "RESULTS_tiny1.md"), str(tmp_path / "f1"), meta
    )
    assert results.verdicts_in(str(tmp_path / "nothing.md")) == {}
    v1 = results.verdicts_in(str(tmp_path / "RESULTS_tiny1.md"))
    assert v1[next(c for c in v1 if c.startswith("Fix 3"))] == "reproduced" and len(v1) == one.count("** |")
    # partly here
    fabricate(str(tmp_path / "r2"), scale, dict(after, **{"sft-big-tail": [0.6, 0.5]}), world=2)
    readme = tmp_path / "README.md"
    readme.write_text(f"{results.HEADLINE[0]}\n{results.HEADLINE[1]}\n")
    text = results.write_results(
        str(tmp_path / "r2"),
        scale,
        str(tmp_path / "RESULTS.md"),
        str(tmp_path / "f2"),
        meta,
        readme=str(readme),
        world=2,
    )
    header = next(l for l in text.splitlines() if l.startswith("| claim |"))
    assert header.endswith("| the tiny world ([RESULTS_tiny1.md](RESULTS_tiny1.md)) |")
    fix3 = next(l for l in text.splitlines() if l.startswith("| Fix 3"))
    assert fix3.endswith("| **partly** | reproduced |")
    constitution = next(l for l in text.splitlines() if l.startswith("| OPSD internalises a constitution"))
    assert constitution.endswith("| – |")  # a claim the first world does not have
    gained = [
        c
        for c in v1
        if v1[c] == "reproduced"
        and f"| {c} |" in text
        and not next(l for l in text.splitlines() if l.startswith(f"| {c} |")).count("| **reproduced** |")
    ]
    assert (
        gained and f"{len(gained)} claim(s) that this world does not reproduce are reproduced there" in text
    )
    assert all(c in text.split("are reproduced there: ")[1].split("\n")[0] for c in gained)
    assert f"{len(gained)} of the others are reproduced in the tiny world" in readme.read_text()


def test_only_keeps_the_named_runs_and_what_they_need():
    runs = plan.plan(settings.SCALES["full"], world=2)
    names = [r.name for r in plan.only(runs, ["opd/raw-mid-tail-s1", "opsd/tiny2-none"])]
    assert sorted(names) == sorted(
        [
            "far",
            "grpo/s1",
            "select/s1",
            "opd/raw-mid-tail-s1",
            "opsd/tiny2-none-s0",
            "opsd/tiny2-none-s1",
            "opsd/tiny2-none-s2",
        ]
    )
    with pytest.raises(errors.UserError, match="no run of the plan"):
        plan.only(runs, ["nothing/"])
