"""Tests of train_opsd.py on tiny random models (CPU, seconds).

The frozen teacher never changes, the `none` control gives zero loss, the EMA teacher follows its
formula and resumes exactly, a mismatched chat template is caught, and the Mechanism 3
measurement decomposes as its closed form says.
"""

import json

import pytest
import torch
from test_opd import kill_run_at_step_3, same_final_weights

import common
import data
import mechanism3
import models
import train_opd
import train_opsd


def saved_model(tmp_path, seed=2):
    tok = models.tiny_tokenizer()
    path = str(tmp_path / f"m{seed}")
    models.save(models.build_tiny(seed=seed), tok, path)
    return path


def small_cfg(path, **kw):
    cfg = train_opsd.parse_config(["--student", path])
    cfg.update(
        steps=3,
        batch_size=6,
        micro_batch=6,
        max_new_tokens=10,
        eval_n=4,
        eval_max_new_tokens=10,
        eval_every=0,
        ckpt_every=2,
        lr=3e-3,
        threads=1,
        measure_n=0,
    )
    cfg.update(kw)
    return cfg


def step_setup(cfg):
    tok = models.tiny_tokenizer()
    student, _ = models.load(cfg["student"], dtype=torch.float32)
    teacher = train_opsd.self_teacher(cfg, student, torch.device("cpu"))
    examples = data.load_examples("synthetic", n=cfg["batch_size"], split="train", hard_frac=0.5)
    prompts = [data.context_ids(tok, ex) for ex in examples]
    opt = torch.optim.AdamW(student.parameters(), lr=cfg["lr"], betas=(0.9, 0.98), weight_decay=0.0)
    sched = common.cosine_schedule(opt, 10, 0.0)
    return tok, student, teacher, examples, prompts, opt, sched


def do_step(cfg, tok, student, teacher, examples, prompts, opt, sched, seed=0):
    """One OPSD step as train_opsd.main takes it: opd_step with the self-teacher's contexts, then the EMA update."""
    contexts = train_opsd.teacher_contexts(tok, examples, prompts, cfg["pi"])
    m = train_opd.opd_step(
        student, teacher, tok, prompts, contexts, cfg, opt, sched, torch.Generator().manual_seed(seed)
    )
    if cfg["teacher_mode"] == "ema":
        train_opsd.ema_update(teacher, student, cfg["ema_decay"])
    return m


def params(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_frozen_teacher_never_changes_while_the_student_does(tmp_path):
    cfg = small_cfg(saved_model(tmp_path), pi="answer_only", loss="topk_tail", k=50)
    tok, student, teacher, examples, prompts, opt, sched = step_setup(cfg)
    t0, s0 = params(teacher), params(student)
    assert teacher is not student
    for i in range(2):
        m = do_step(cfg, tok, student, teacher, examples, prompts, opt, sched, seed=i)
        assert m["loss"] > 1e-4  # the hint changes the teacher's context, so there is something to learn
    assert all(torch.equal(v, t0[k]) for k, v in teacher.state_dict().items())
    assert any(not torch.equal(v, s0[k]) for k, v in student.state_dict().items())


def test_none_control_gives_zero_loss_at_step_0(tmp_path):
    cfg = small_cfg(saved_model(tmp_path), pi="none", loss="topk_tail", k=50)
    tok, student, teacher, examples, prompts, opt, sched = step_setup(cfg)
    m = do_step(cfg, tok, student, teacher, examples, prompts, opt, sched)
    assert abs(m["loss"]) < 1e-6 and m["kl/full"] < 1e-6


def test_none_control_is_exactly_zero_under_bf16_autocast(tmp_path):
    # As on a GPU: the student trains in float32 weights under bf16 autocast. The self-teacher
    # has the student's dtype and runs under the same autocast, so it computes what the student
    # computes and the control's loss is 0 (a bf16 teacher, or one outside autocast, is not).
    cfg = small_cfg(saved_model(tmp_path), pi="none", loss="full_rkl", amp=True)
    tok, student, teacher, examples, prompts, opt, sched = step_setup(cfg)
    assert next(teacher.parameters()).dtype == torch.float32
    m = do_step(cfg, tok, student, teacher, examples, prompts, opt, sched)
    assert m["loss"] == 0.0 and m["kl/full"] == 0.0


def test_paper_preset_is_the_papers_math_opsd():
    cfg = train_opsd.parse_config(["--preset", "paper"])
    assert (cfg["data"], cfg["pi"], cfg["loss"], cfg["k"], cfg["teacher_mode"]) == (
        "openthoughts",
        "answer_only",
        "topk_tail",
        50,
        "frozen",
    )
    assert (
        cfg["batch_size"],
        cfg["minibatches"],
        cfg["steps"],
        cfg["top_p"],
        cfg["temperature"],
        cfg["lr"],
    ) == (128, 2, 300, 1.0, 1.0, 2e-6)


def test_live_teacher_is_the_student(tmp_path):
    cfg = small_cfg(saved_model(tmp_path), pi="system_prompt", loss="full_rkl", teacher_mode="live")
    tok, student, teacher, examples, prompts, opt, sched = step_setup(cfg)
    assert teacher is student
    ctx = train_opsd.teacher_contexts(tok, examples, prompts, cfg["pi"])
    assert all(c[: len(data.context_ids(tok, ex, "system_prompt"))] == c for c, ex in zip(ctx, examples))
    assert all(len(c) > len(p) for c, p in zip(ctx, prompts))  # the rule is there


def test_ema_teacher_follows_its_update_rule(tmp_path):
    d = 0.9
    cfg = small_cfg(
        saved_model(tmp_path), pi="system_prompt", loss="full_rkl", teacher_mode="ema", ema_decay=d
    )
    tok, student, teacher, examples, prompts, opt, sched = step_setup(cfg)
    t0 = params(teacher)
    assert all(torch.equal(v, t0[k]) for k, v in student.state_dict().items())  # starts as the student
    do_step(cfg, tok, student, teacher, examples, prompts, opt, sched)
    s1 = params(student)
    for k, v in teacher.state_dict().items():
        torch.testing.assert_close(v, d * t0[k] + (1 - d) * s1[k], rtol=1e-6, atol=1e-7)  # float32 rounding
    assert any(not torch.equal(v, t0[k]) for k, v in teacher.state_dict().items())
    assert not any(p.requires_grad for p in teacher.parameters())


def test_alignment_check_catches_a_mismatched_template():
    tok = models.tiny_tokenizer()
    ex = data.load_examples("synthetic", n=2, split="train")
    prompts = [data.context_ids(tok, e) for e in ex]
    good = [data.context_ids(tok, e, "answer_only") for e in ex]
    train_opsd.check_alignment(tok, prompts, good)  # passes
    ids = models.TINY_IDS
    # the teacher's context rendered in "thinking mode": no empty <think>\n\n</think>\n\n block
    bad = [g[: len(g) - 6] for g in good]
    assert (
        tok.decode(bad[0][-10:], skip_special=False).endswith("assistant\n") and ids["<think>"] not in bad[0]
    )
    with pytest.raises(ValueError, match="alignment") as err:
        train_opsd.check_alignment(tok, prompts, [good[0], bad[1]])
    msg = str(err.value)
    assert (
        "row 1" in msg
        and "</think>" in msg
        and "student context ends" in msg
        and "teacher context ends" in msg
    )


def test_measurement_decomposes_and_vanishes_for_a_shared_teacher(tmp_path):
    tok = models.tiny_tokenizer()
    model = models.build_tiny(seed=3)
    ex = data.load_examples("synthetic", n=6, split="eval", hard_frac=0.5)
    same = mechanism3.measure_aggregation(model, model, tok, ex, "none", m=4, max_new_tokens=8)
    assert same["pi_values"] == 1 and all(
        abs(same[k]) < 1e-5 for k in ("kl/own_pi", "kl/geo_mean", "irreducible/-logZ")
    )
    other = models.build_tiny(seed=4)
    r = mechanism3.measure_aggregation(model, other, tok, ex, "answer_only", m=4, max_new_tokens=8)
    assert r["pi_values"] == 4 and r["tokens"] > 0
    assert r["irreducible/-logZ"] > 0  # hints that differ make teachers that disagree
    assert r["kl/pi_mean"] == pytest.approx(r["kl/geo_mean"] + r["irreducible/-logZ"], rel=1e-4)
    # per problem: the same identity on its own tokens, and the token-weighted mean is the whole's
    per = r["per_problem"]
    assert [p["id"] for p in per] == [e.id for e in ex][: len(per)] and sum(p["tokens"] for p in per) == r[
        "tokens"
    ]
    for p in per:
        assert p["kl/pi_mean"] == pytest.approx(p["kl/geo_mean"] + p["irreducible/-logZ"], rel=1e-4, abs=1e-6)
    for k in ("kl/own_pi", "kl/geo_mean", "irreducible/-logZ"):
        assert sum(p[k] * p["tokens"] for p in per) / r["tokens"] == pytest.approx(r[k], rel=1e-5)
    with pytest.raises(ValueError, match="full"):
        mechanism3.measure_aggregation(model, other, tok, ex, "full")


def test_pi_values_are_distinct_answers_of_the_same_kind():
    import random

    pool = data.load_examples("synthetic", n=40, split="eval", hard_frac=0.5)
    hard = next(e for e in pool if e.meta["hard"])
    vals = mechanism3.pi_values(hard, pool, 5, random.Random(0))
    hints = [v.hint or v.answer for v in vals]
    assert vals[0] is hard and len(set(hints)) == 5
    assert all(len(h) >= 3 for h in hints)  # other 2-digit products, not small results
    assert all(v.problem == hard.problem for v in vals)


def test_ema_run_resumes_exactly_and_reports_mechanism3(tmp_path, monkeypatch):
    path = saved_model(tmp_path)
    args = [
        "--preset",
        "tiny-answer",
        "--student",
        path,
        "--teacher-mode",
        "ema",
        "--ema-decay",
        "0.5",
        "--steps",
        "4",
        "--batch-size",
        "4",
        "--micro-batch",
        "4",
        "--max-new-tokens",
        "8",
        "--eval-n",
        "3",
        "--ckpt-every",
        "2",
        "--threads",
        "1",
        "--measure-n",
        "3",
    ]
    full = train_opsd.main(args + ["--out", str(tmp_path / "a")])
    assert set(full["mechanism3"]) == {"before", "after"} and full["mechanism3"]["after"]["pi_values"] == 8
    assert json.load(open(tmp_path / "a" / "summary.json"))["mechanism3"] == full["mechanism3"]
    row = train_opsd.table([str(tmp_path / "a")]).splitlines()[-1]
    after, m3 = full["student_after"], full["mechanism3"]["after"]
    assert row.startswith("| a | answer_only | topk_tail |") and f"{after['acc/pass@1']:.3f}" in row
    assert row.endswith(f"{m3['kl/own_pi']:.3f} / {m3['kl/geo_mean']:.3f} / {m3['irreducible/-logZ']:.3f} |")
    kill_run_at_step_3(monkeypatch, lambda: train_opsd.main(args + ["--out", str(tmp_path / "b")]))
    train_opsd.main(args + ["--out", str(tmp_path / "b"), "--resume"])
    same_final_weights(tmp_path / "a", tmp_path / "b")
    ta = torch.load(tmp_path / "a" / "ckpt" / "rank0.pt", weights_only=False)["ema_teacher"]
    tb = torch.load(tmp_path / "b" / "ckpt" / "rank0.pt", weights_only=False)["ema_teacher"]
    assert all(torch.equal(ta[k], tb[k]) for k in ta)


def test_bad_flags_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        train_opsd.parse_config(["--teacher", "x"])  # OPSD has no separate teacher
    with pytest.raises(SystemExit):
        train_opsd.parse_config(["--ema-decay", "1.0"])
    assert "argument --ema-decay: must be in [0, 1), not 1.0" in capsys.readouterr().err
    with pytest.raises(ValueError, match="measure-n"):
        train_opsd.parse_config(["--preset", "tiny-full", "--measure-n", "4"])


def test_presets_reach_the_config_unless_a_flag_overrides_them():
    cfg = train_opsd.parse_config(["--preset", "tiny-answer"])
    assert (cfg["loss"], cfg["k"], cfg["hard_frac"], cfg["pi"]) == ("topk_tail", 50, 0.25, "answer_only")
    assert train_opsd.parse_config(["--preset", "tiny-rule"])["loss"] == "full_rkl"
    assert train_opsd.parse_config(["--preset", "tiny-answer", "--k", "7"])["k"] == 7
    assert train_opd.parse_config(["--preset", "paper"])["loss"] == "topk_sg"
    assert train_opd.parse_config([])["loss"] == "topk_tail"


def test_every_tiny_preset_says_what_it_shows_with_metrics_the_evaluation_writes():
    """Each tiny-world preset has its line; the metrics it puts beside accuracy are ones the
    evaluation writes (tiny_world.task.measures, or the bare-box rate train_opsd adds); a run that
    changes the preset's PI or student gets no line."""
    from tiny_world import task

    ex = data.load_examples("synthetic", n=8, split="eval", flagged_frac=0.5, seed=3)
    records = [{"id": e.id, "response": "\\boxed{1}", "correct": False} for e in ex]
    written = set(task.measures(ex, records)) | {"format/boxed_only"}
    for name in train_opsd.PRESETS:
        if name == "paper":
            continue
        text, columns = train_opsd.shows(train_opsd.parse_config(["--preset", name]))
        assert text, name
        assert {key for key, _ in columns} <= written, name
    assert train_opsd.shows(train_opsd.parse_config(["--preset", "tiny-rule", "--pi", "answer_only"])) == (
        None,
        (),
    )
    assert train_opsd.shows(train_opsd.parse_config(["--preset", "tiny2-concise", "--student", "x"])) == (
        None,
        (),
    )
    ev = {"acc/pass@1": 0.5, "acc/pass@1_ci": [0.4, 0.6], "len/mean": 20.0, "len/truncated_frac": 0.0}
    ev.update({"rep/ratio": 0.1, "format/concise": 0.875})
    cfg = train_opsd.parse_config(["--preset", "tiny2-concise"])
    table = common.summary_table(
        "t",
        {"wall_s": 1.0},
        cfg,
        [("a", ev), ("b", {**ev, "format/concise": 0.25})],
        train_opsd.shows(cfg)[1],
    )
    header, _, a, b = table.splitlines()[1:]
    assert "| concise |" in header and "| 0.875 |" in a and "| 0.250 |" in b
