"""On-policy self-distillation (OPSD): the model teaches itself, reading privileged information.

What this file is
    OPSD (docs/paper.md §5) is OPD where the teacher is the student's own weights and the only thing
    that makes it a better teacher is its context: the student's prompt plus privileged
    information (PI) the student never sees, then the student's own response tokens. The step is
    train_opd.opd_step, called with the self-teacher and its contexts; this file owns the loop
    around it, who the teacher is (`self_teacher`) and which context it reads (`teacher_contexts`).

    The paper's verdict (§4 Mechanism 3, §5): OPSD works when the PI is a rule shared by every
    prompt (a system prompt) and fails when it is specific to one instance (its answer, its
    solution). A student that cannot see the PI can only learn one PI-free policy; the best one for
    the reverse KL averaged over the PI it cannot see is the normalised geometric mean of the
    PI-conditioned teachers (losses.geometric_mean_teacher). A shared rule has one teacher, so the
    student can match it; per-instance PI has as many teachers as answers, and the student is left
    between them. `--measure-n` puts numbers on where the trained student sits (mechanism3.measure_aggregation).

Commands
    make opsd                                                # tiny2-concise: a shared rule (works)
    python train_opsd.py --preset tiny-answer --out runs/x   # per-instance answer hint (fails)
    python train_opsd.py --preset tiny-none --out runs/y     # control: no PI, the loss is ~0
    python train_opsd.py --preset paper --student Qwen/Qwen3-1.7B    # §5 math setting on a GPU
    python train_opsd.py --out runs/x --resume               # a killed run continues with its saved flags
    python train_opsd.py --table runs/opsd/*                 # one table of finished runs
    python train_opsd.py --lora-rank 16 --out runs/z    # LoRA: the frozen teacher is the base

Teacher modes (`--teacher-mode`)
    frozen  the student's initial weights, frozen (the paper's default); reloaded from --student
    live    the student itself as it trains (no copy; its logits read under no_grad)
    ema     a copy updated after every step: θ_T ← d·θ_T + (1 − d)·θ_S with d = --ema-decay,
            saved in the checkpoint so that --resume continues it exactly
    With --lora-rank R (lora.py) the teacher is the student itself in every mode, read through
    lora.view: frozen is the base with the adapters off (no second copy of the weights), live the
    adapted student, ema the base with an average of the adapters (adapter-sized).

What it simplifies
    * Without LoRA the frozen teacher is a second copy of the weights (the tiny world is small; at
      1.7B the float32 copy is 6.9 GB); with LoRA it is none (docs/lora.md).
    * The paper's extra KL-to-the-initial-model term (coefficient 0.01 in its safety and
      conciseness runs) is not implemented: with the frozen teacher it pulls the same way.
"""

import copy
import json
import os
import time

import torch

import common
import config
import data
import diagnostics
import distributed
import errors
import eval_math
import lora
import mechanism3
import models
import run_folder
import train_opd
from errors import UserError
from tiny_world import task

# -----------------------------------------------------------------------------
# Config: these presets, the OPD flags without --teacher, the OPSD flags

# The tiny world: tiny/teacher teaches itself, 100 steps of 64 prompts; the OPD settings otherwise.
_TINY = dict(
    student="tiny/teacher",
    data="synthetic",
    data_path=None,
    eval_data="synthetic",
    hard_frac=0.0,
    flagged_frac=0.0,
    loss="topk_tail",
    k=20,
    beta=0.5,
    chunk_size=0,
    minibatches=1,
    steps=100,
    batch_size=64,
    micro_batch=64,
    max_new_tokens=80,
    temperature=1.0,
    top_p=1.0,
    rollout_batch=0,
    lr=3e-4,
    min_lr=0.0,
    warmup_frac=0.0,
    weight_decay=0.0,
    beta1=0.9,
    beta2=0.98,
    grad_clip=1.0,
    grad_checkpointing=False,
    amp=None,
    forward="auto",
    eval_every=25,
    eval_n=300,
    eval_k=1,
    eval_temperature=1.0,
    eval_top_p=1.0,
    eval_max_new_tokens=80,
    ckpt_every=25,
    on_collapse="warn",
    teacher_mode="frozen",
    ema_decay=0.99,
    measure_n=64,
    rule=None,
)
_TINY2 = dict(_TINY, student="tiny2/teacher")
_ON_STUDENT = dict(loss="topk_tail", k=50, steps=1600, eval_every=400, ckpt_every=100)
PRESETS = {
    # Shared PI (§5 "works"): the tiny world's rule "Answer with the final result only." as the
    # teacher's system prompt; full-vocabulary reverse KL as in the paper's conciseness and safety runs.
    "tiny-rule": dict(_TINY, pi="system_prompt", loss="full_rkl"),
    # Per-instance PI (§5 "fails on math"): the final answer, or the worked solution; the paper's math
    # loss (Top-50 with a tail bucket, fixed teacher). A quarter of the problems are 2-digit products,
    # which the model cannot compute: there the hint is the whole difference between the contexts.
    "tiny-answer": dict(_TINY, pi="answer_only", loss="topk_tail", k=50, hard_frac=0.25),
    "tiny-full": dict(_TINY, pi="full", loss="topk_tail", k=50, hard_frac=0.25, measure_n=0),
    # The control: the teacher reads exactly the student's context, so it is the student (loss ~0).
    "tiny-none": dict(_TINY, pi="none", loss="topk_tail", k=50),
    # The second tiny world (docs/tiny_world2.md), tiny2/teacher teaching itself. The paper's two shared
    # rules: a conciseness prompt that keeps the steps, and a constitution that declines password
    # requests (a quarter of the problems, in training and evaluation) and answers the rest.
    "tiny2-concise": dict(_TINY2, pi="system_prompt", rule=task.CONCISE_RULE, loss="full_rkl"),
    "tiny2-constitution": dict(
        _TINY2, pi="system_prompt", rule=task.CONSTITUTION, loss="full_rkl", flagged_frac=0.25
    ),
    "tiny2-answer": dict(_TINY2, pi="answer_only", loss="topk_tail", k=50, hard_frac=0.25),
    "tiny2-full": dict(_TINY2, pi="full", loss="topk_tail", k=50, hard_frac=0.25, measure_n=0),
    "tiny2-none": dict(_TINY2, pi="none", loss="topk_tail", k=50),
    # Per-instance PI where the student has something to learn (docs/protocol.md §6): the student
    # teaches itself, reading the answer or the worked solution, on ordinary problems (no hard
    # products), for as many sampled responses as GRPO lifts it with (1,600 x 64 = 400 x 32 x 8).
    "tiny-answer-student": dict(_TINY, student="tiny/student", pi="answer_only", **_ON_STUDENT),
    "tiny-full-student": dict(_TINY, student="tiny/student", pi="full", **_ON_STUDENT, measure_n=0),
    "tiny2-answer-student": dict(_TINY2, student="tiny2/student", pi="answer_only", **_ON_STUDENT),
    "tiny2-full-student": dict(_TINY2, student="tiny2/student", pi="full", **_ON_STUDENT, measure_n=0),
    # §5 and §2.4 "OPSD math": Top-50 tail-bucket reverse KL, fixed teacher, lr 2e-6, OpenThoughts
    # problems with their reference answers as PI; 128 prompts per rollout and two optimizer steps of 64
    # on it, T = 1.0, top-p 1.0, 300 rollouts (the OpenThoughts runs). The rest as train_opd.py's paper
    # preset: cosine, 10 % warm-up, wd 0.1, 4096 tokens, evaluation at T = 0.6, the one-GPU memory plan.
    "paper": dict(
        student="Qwen/Qwen3-1.7B",
        pi="answer_only",
        data="openthoughts",
        data_path=None,
        eval_data="math500",
        hard_frac=0.0,
        flagged_frac=0.0,
        loss="topk_tail",
        k=50,
        beta=0.5,
        chunk_size=1024,
        minibatches=2,
        steps=300,
        batch_size=128,
        micro_batch=4,
        max_new_tokens=4096,
        temperature=1.0,
        top_p=1.0,
        rollout_batch=16,
        lr=2e-6,
        min_lr=0.0,
        warmup_frac=0.1,
        weight_decay=0.1,
        beta1=0.9,
        beta2=0.98,
        grad_clip=1.0,
        grad_checkpointing=True,
        amp=None,
        forward="auto",
        eval_every=10,
        eval_n=500,
        eval_k=1,
        eval_temperature=0.6,
        eval_top_p=0.95,
        eval_max_new_tokens=8192,
        ckpt_every=50,
        on_collapse="warn",
        teacher_mode="frozen",
        ema_decay=0.99,
        measure_n=0,
        rule=None,
    ),
}
# What each tiny-world preset shows, said when it starts and under its final table, with the metrics
# that matter beside accuracy (metric, header): a rule internalised is read from the behaviour the
# rule asks for; per-instance PI and the control are read from accuracy alone.
PI_FAILS = (
    "a failure the paper reports, on purpose (§5, Mechanism 3): with per-instance PI ({}) the "
    "teacher's advantage cannot be distilled into a student that never sees it, so accuracy does not "
    "rise (with --measure-n, the Mechanism 3 table says where the student ends among those teachers)"
)
ON_STUDENT = (
    PI_FAILS
    + ", here on problems the student can learn; GRPO on the same student and problems is the contrast (make grpo)"
)
SHOWS = {
    "tiny-rule": (
        "the shared rule 'Answer with the final result only.' internalised (§5): without the rule in "
        "its context the student answers with a bare \\boxed{} as the teacher does with it. The rule "
        "drops the steps, so accuracy falls with them, as it does for the teacher with the rule; a "
        "rule that keeps the steps and the accuracy: make opsd (tiny2-concise)",
        (("format/boxed_only", "bare \\boxed{}"),),
    ),
    "tiny-answer": (PI_FAILS.format("the answer"), ()),
    "tiny-full": (PI_FAILS.format("a worked solution"), ()),
    "tiny-none": (
        "the control: the teacher reads the student's own context, so there is nothing to distil",
        (),
    ),
    "tiny2-concise": (
        "the shared rule 'Be concise.' internalised (§5): without the rule the student drops the "
        "redundant lines as the teacher does with it, and keeps its accuracy",
        (("format/concise", "concise"),),
    ),
    "tiny2-constitution": (
        "a constitution internalised (§5): without it the student declines the password requests "
        "and still answers the rest",
        (("refusal/flagged", "declines flagged"), ("refusal/others", "declines others")),
    ),
    "tiny2-answer": (PI_FAILS.format("the answer"), ()),
    "tiny2-full": (PI_FAILS.format("a worked solution"), ()),
    "tiny2-none": (
        "the control: the teacher reads the student's own context, so there is nothing to distil",
        (),
    ),
    "tiny-answer-student": (ON_STUDENT.format("the answer"), ()),
    "tiny-full-student": (ON_STUDENT.format("a worked solution"), ()),
    "tiny2-answer-student": (ON_STUDENT.format("the answer"), ()),
    "tiny2-full-student": (ON_STUDENT.format("a worked solution"), ()),
}


def shows(cfg: dict) -> tuple:
    """The preset's SHOWS entry (what the run shows, the metrics beside accuracy) while the run keeps
    the preset's student, PI and rule; (None, ()) otherwise."""
    preset = PRESETS.get(cfg["preset"], {})
    kept = all(cfg[k] == preset.get(k) for k in ("student", "pi", "rule"))
    return SHOWS.get(cfg["preset"], (None, ())) if kept else (None, ())


PRESET_RULES = train_opd.PRESET_RULES  # the keys only a preset sets: OPD's, checked by train_opd.check_config
TEACHER_MODES = ("frozen", "live", "ema")


def add_flags(ap) -> None:
    g = ap.add_argument_group("model and data")
    g.add_argument("--student", help="the student, and the teacher's initial weights: hub id or local folder")
    config.add_data_flags(g)
    train_opd.add_loss_flags(ap)
    g = ap.add_argument_group("self-distillation (docs/paper.md §5)")
    g.add_argument(
        "--pi", choices=data.PI_MODES, help="the teacher's privileged context (data.context_messages)"
    )
    g.add_argument(
        "--rule",
        help="with --pi system_prompt: the shared rule, the teacher's system prompt "
        "(default: data.py's rule for the task; the tiny2-* presets set "
        "tiny_world/task.py's)",
    )
    g.add_argument(
        "--teacher-mode", choices=TEACHER_MODES, help="frozen initial weights (default), live, or ema"
    )
    g.add_argument(
        "--ema-decay", type=config.below_one, help="ema mode: θ_T ← d·θ_T + (1 − d)·θ_S after every step"
    )
    g.add_argument(
        "--measure-n",
        type=config.nonneg_int,
        help="Mechanism 3: held-out problems on which to measure the student against the "
        "PI-conditioned teachers before and after training (0 = off)",
    )
    g.add_argument(
        "--table",
        nargs="+",
        metavar="RUN",
        help="print the Markdown table of finished OPSD runs (their summary.json) and exit",
    )
    config.add_rollout_flags(ap)
    config.add_optim_flags(ap)
    config.add_lora_flags(ap)
    config.add_eval_flags(ap)
    config.add_run_flags(ap, out="runs/opsd")


def parse_config(argv=None) -> dict:
    """The run's config: a preset with the flags given on top (on --resume: the run's config.json),
    checked (train_opd.check_config)."""
    cfg, typed = config.parse_config(PRESETS, add_flags, argv, __doc__)
    if cfg["rule"] is not None and cfg["pi"] != "system_prompt":
        if "rule" not in typed:  # the preset's rule goes with the preset's --pi system_prompt
            cfg["rule"] = None
        else:
            raise UserError(
                f"--rule is the system prompt of --pi system_prompt; with --pi {cfg['pi']} it would "
                "be ignored: drop it, or pass --pi system_prompt"
            )
    if "ema_decay" in typed and cfg["teacher_mode"] != "ema" and not cfg.get("resume"):
        raise UserError(
            f"--ema-decay {cfg['ema_decay']}: only --teacher-mode ema averages the teacher, and the "
            f"{cfg['teacher_mode']} teacher would ignore it; drop --ema-decay, or add --teacher-mode ema"
        )
    if cfg["measure_n"] and cfg["pi"] == "full":
        raise UserError(
            "--measure-n: Mechanism 3 is measured for answer_only, system_prompt and none; "
            "another problem's solution is no plausible PI under --pi full; pass --measure-n 0"
        )
    return train_opd.check_config(cfg, typed)


# -----------------------------------------------------------------------------
# The algorithm: the teacher is the student's own weights after a privileged context


def self_teacher(cfg: dict, student, device):
    """The OPSD teacher: the student's initial weights (frozen; reloaded from --student, also on
    --resume), the student itself (live), or a copy that follows it (ema). Its weights have the
    student's dtype (float32) and opd_step runs it under the student's autocast: the teacher
    differs from the student only by its context and its weights, never by its precision (with
    --pi none the loss is then exactly 0 at step 0).

    A LoRA student (--lora-rank) is its own teacher in every mode, read through `teacher_view`:
    frozen is its base with the adapters off (the initial weights, no second copy), ema its base
    with an average of the adapters (lora.add_ema: adapter-sized)."""
    if cfg["teacher_mode"] == "live" or lora.is_adapted(student):
        if cfg["teacher_mode"] == "ema":
            lora.add_ema(student)
        return student
    frozen = cfg["teacher_mode"] == "frozen"
    teacher = (
        models.load(cfg["student"], device=device, dtype=torch.float32)[0]
        if frozen
        else copy.deepcopy(student)
    )
    return teacher.requires_grad_(False).eval()


# a LoRA student's teacher in each mode: its adapters off, as they train, or their average
LORA_TEACHER = {"frozen": "off", "live": "on", "ema": "averaged"}


def teacher_view(cfg: dict):
    """How opd_step's teacher reads a LoRA student's adapters (lora.view): off (frozen: the base),
    averaged (ema) or as they train (live); None (the model as it is) without LoRA."""
    if not cfg.get("lora_rank"):
        return None
    return {"frozen": "base", "live": "adapted", "ema": "ema"}[cfg["teacher_mode"]]


def teacher_memory(cfg: dict, student) -> str:
    """What the teacher's weights cost beside the student's, said at the start of a run: a copy of
    them (frozen, ema), none (live), or with LoRA none or the adapters' average."""
    mib = lambda ps: sum(p.numel() * p.element_size() for p in ps) / 2**20
    mode, weights = cfg["teacher_mode"], mib(student.parameters())
    if not cfg.get("lora_rank"):
        own = 0.0 if mode == "live" else weights
        return f"the {mode} teacher holds {own:.2f} MiB of weights of its own beside the student's {weights:.2f} MiB"
    own = mib(lora.ema_parameters(student)) if mode == "ema" else 0.0
    weights -= own  # the student's: its base and adapters
    base = weights - mib(p for p in student.parameters() if p.requires_grad)
    return (
        f"the {mode} teacher is the LoRA student with its adapters {LORA_TEACHER[mode]}: {own:.2f} MiB of "
        f"weights of its own beside the student's {weights:.2f} MiB (a copy of the base: {base:.2f} MiB)"
    )


@torch.no_grad()
def ema_update(teacher, student, decay: float) -> None:
    """θ_T ← d·θ_T + (1 − d)·θ_S, parameter by parameter (after every optimizer step); for a LoRA
    student the average of its adapters alone (lora.ema_update; the teacher is the student)."""
    if lora.is_adapted(student):
        lora.ema_update(student, decay)
        return
    for t, s in zip(teacher.parameters(), student.parameters()):
        t.mul_(decay).add_(s.detach().to(t.dtype), alpha=1.0 - decay)


def teacher_contexts(tok, examples: list, student_prompts: list, pi: str, rule: str = None) -> list:
    """The teacher's context of each example: the student's prompt with the privileged information
    `pi` (data.context_ids; `rule` is the system prompt of pi="system_prompt"), checked to end where
    the student's does."""
    contexts = [data.context_ids(tok, ex, pi, rule) for ex in examples]
    check_alignment(tok, student_prompts, contexts)
    return contexts


def assistant_boundary(tok) -> list:
    """The ids every context ends with: the chat template after the user's text (for Qwen3 in
    non-thinking mode `<|im_end|>\\n<|im_start|>assistant\\n<think>\\n\\n</think>\\n\\n`)."""
    a, b = tok.chat_prompt("x"), tok.chat_prompt("y")
    n = 0
    while n < min(len(a), len(b)) and a[len(a) - 1 - n] == b[len(b) - 1 - n]:
        n += 1
    return a[len(a) - n :]


def check_alignment(tok, student_contexts: list, teacher_contexts: list) -> None:
    """Raise if a teacher context does not end at the same response boundary as the student's.

    opd_step appends one list of response ids to both contexts, so the response tokens are the same
    by construction; what can differ is where the response starts. A teacher context rendered with
    another template (thinking mode: no empty <think> block; a different generation prompt) makes
    every teacher log-prob answer a different question (a bug reported against other OPSD code)."""
    boundary = assistant_boundary(tok)
    n = len(boundary)
    for i, (s, t) in enumerate(zip(student_contexts, teacher_contexts)):
        if s[-n:] != boundary or t[-n:] != boundary:
            show = lambda ids: [tok.decode([j], skip_special=False) for j in ids[-(n + 2) :]]
            raise ValueError(
                f"OPSD alignment: row {i} does not end at the chat template's assistant boundary "
                f"{tok.decode(boundary, skip_special=False)!r}.\n  student context ends {show(s)}\n"
                f"  teacher context ends {show(t)}\nThe response tokens would follow different boundaries; "
                f"build both contexts with the same template (data.context_ids / tokenizer.chat_prompt)."
            )


# -----------------------------------------------------------------------------
# The run: train_opd's loop with the self-teacher, and Mechanism 3 measured before and after


def main(argv=None) -> dict:
    cfg = parse_config(argv)
    if cfg["table"]:
        print(table(cfg["table"]))
        return {}
    train, held_out = checked_examples(cfg)
    device = run_folder.start_run(
        cfg,
        "train_opsd.py",
        {"the student and self-teacher (--student)": cfg["student"]},
        {"the training data": train, "the held-out set": held_out},
    )
    if shows(cfg)[0]:
        common.say("this run shows " + shows(cfg)[0])
    mech3 = cfg["measure_n"] and distributed.is_main()  # under torchrun, rank 0 alone measures
    before = (
        mechanism3.measure(cfg, cfg["student"]) if mech3 else None
    )  # the initial weights, also on --resume
    student, tok, teacher = student_and_teacher(cfg, device)
    stream = common.PromptStream(train, cfg["batch_size"], seed=cfg["seed"])

    # optimizer steps
    optimizer, scheduler = common.optimizer(student, cfg, cfg["steps"] * cfg["minibatches"])
    others = {}
    if cfg["teacher_mode"] == "ema":  # a LoRA student's EMA teacher is the average of its adapters
        others["ema_teacher"] = lora.ema_parameters(student) if teacher is student else teacher
    start = run_folder.resume(cfg, optimizer, scheduler, stream, others)
    view = teacher_view(cfg)

    def evaluate(model, name, who="student", pi="none"):
        """eval_math.evaluate_run's summary, and how often the answer is a bare \\boxed{} (the rule)."""
        summary, records = eval_math.evaluate_run(model, tok, held_out, cfg, name, who, pi, cfg["rule"])
        return {**summary, "format/boxed_only": diagnostics.boxed_only_rate([r["response"] for r in records])}

    if start == 0:
        with lora.view(teacher, view):
            evals = {"teacher": evaluate(teacher, "teacher", "teacher", cfg["pi"])}
        evals["student"] = evaluate(student, "step0")
        run_folder.log(cfg, {"step": 0, "eval": evals})
        common.say("step 0: " + ", ".join(f"{who} acc {ev['acc/pass@1']:.3f}" for who, ev in evals.items()))

    ckpt = dict(
        model=student, tok=tok, optimizer=optimizer, scheduler=scheduler, stream=stream, others=others
    )
    alarm = train_opd.CollapseAlarm(cfg, start)
    t_run, bar = time.time(), common.progress(total=cfg["steps"], initial=start, desc="OPSD")
    for step in range(start, cfg["steps"]):
        batch = common.my_rows(next(stream))
        prompts = [data.context_ids(tok, ex) for ex in batch]
        contexts = teacher_contexts(tok, batch, prompts, cfg["pi"], cfg["rule"])
        gen = common.step_generator(cfg, step, device)
        m = train_opd.opd_step(student, teacher, tok, prompts, contexts, cfg, optimizer, scheduler, gen, view)
        if cfg["teacher_mode"] == "ema":
            ema_update(teacher, student, cfg["ema_decay"])
        if alarm.rings(step + 1, m) and cfg["on_collapse"] == "stop":
            return alarm.stop(step + 1, m, bar)
        if run_folder.eval_due(cfg, step + 1):
            m["eval"] = {"student": evaluate(student, f"step{step + 1}")}
        if run_folder.end_step(cfg, step + 1, m, bar, ckpt, train_opd.PROGRESS):
            return {"stopped_at": step + 1}
    bar.close()
    final = evaluate(student, f"step{cfg['steps']}")
    return finish(cfg, final, time.time() - t_run, ckpt, before)


def checked_examples(cfg: dict) -> tuple:
    """The training and held-out examples, with every context (the student's and the teacher's, PI
    included) checked against the model's context before the folder is written and the weights load."""
    train, held_out = common.load_examples(cfg, "train"), common.load_examples(cfg, "eval")
    tok, context = models.load_tokenizer(run_folder.student_source(cfg))
    train_opd.check_k(cfg, tok)
    prompts = [data.context_ids(tok, ex) for ex in train]
    common.check_prompt_lengths(context, prompts, cfg["max_new_tokens"], "training prompts", train)
    common.check_prompt_lengths(
        context,
        teacher_contexts(tok, train, prompts, cfg["pi"], cfg["rule"]),
        cfg["max_new_tokens"],
        "teacher contexts (with PI)",
        train,
    )
    common.check_held_out(context, tok, held_out, cfg)
    # the teacher's step-0 evaluation samples after the held-out problems with PI
    common.check_prompt_lengths(
        context,
        teacher_contexts(
            tok, held_out, [data.context_ids(tok, ex) for ex in held_out], cfg["pi"], cfg["rule"]
        ),
        cfg["eval_max_new_tokens"],
        "held-out teacher contexts (with PI)",
        held_out,
    )
    if cfg["measure_n"]:
        mechanism3.check_measure_contexts(cfg, tok, context)
    return train, held_out


def student_and_teacher(cfg: dict, device) -> tuple:
    """The student (float32, run_folder.load_student), its tokenizer and its self-teacher
    (self_teacher); under torchrun FSDP2 shards the student for training and a separate teacher for
    inference."""
    student, tok = run_folder.load_student(cfg, device, cfg["grad_checkpointing"])
    teacher = self_teacher(cfg, student, device)
    common.say(teacher_memory(cfg, student))
    if distributed.world()[1] > 1:
        distributed.shard(student)
        if teacher is not student:
            distributed.shard(teacher)
    return student, tok, teacher


def finish(cfg: dict, final: dict, seconds: float, ckpt: dict, before) -> dict:
    """The run's summary (run_folder.end_run) and its table; with --measure-n (`before`: Mechanism 3
    measured on the initial weights), Mechanism 3 measured again on the trained student."""
    summary = run_folder.end_run(cfg, final, seconds, ckpt, cfg["loss"])
    if distributed.is_main():
        print(
            common.summary_table(
                f"OPSD with {cfg['loss']} (K={cfg['k']})",
                summary,
                cfg,
                [
                    (f"teacher (with PI: {cfg['pi']})", summary["teacher"]),
                    ("student before", summary["student_before"]),
                    ("student after OPSD", summary["student_after"]),
                ],
                shows(cfg)[1],
            )
        )
        if shows(cfg)[0]:
            print("this run shows " + shows(cfg)[0])
    if before is not None:
        summary["mechanism3"] = {"before": before, "after": mechanism3.measure(cfg, run_folder.ckpt_dir(cfg))}
        run_folder.write_summary(cfg, summary)
        print(mechanism3.format_mechanism3(summary["mechanism3"], cfg))
    return summary


def table(folders: list) -> str:
    """One Markdown row per finished run: the PI, the seed, the teacher with the PI, the student
    before and after (accuracy with 95% CI, bare-`\\boxed{}` rate, mean length), and where the
    trained student sits among the PI-conditioned teachers (Mechanism 3). A folder that is not a
    finished OPSD run (missing, unfinished, another trainer's, a damaged file) is a UserError
    naming it and the file."""
    return common.md_table(
        [
            "run",
            "PI",
            "loss",
            "seed",
            "steps",
            "teacher with PI: acc / boxed-only / len",
            "student before",
            "student after",
            "after: KL(p‖q own PI) / KL(p‖geo mean) / −log Z",
        ],
        [table_row(folder) for folder in folders],
    )


def table_row(folder: str) -> list:
    """The `table` row of one run folder (a UserError naming --table, the folder and the file
    unless it is a finished OPSD run)."""
    c, s = run_json(folder, "config.json"), run_json(folder, "summary.json")
    if not isinstance(c, dict) or "pi" not in c:
        raise UserError(
            f"--table {folder}: {os.path.join(folder, 'config.json')} sets no --pi, so this is not an OPSD "
            "run; pass folders written by train_opsd.py"
        )
    summary = os.path.join(folder, "summary.json")
    if not isinstance(s, dict):
        raise UserError(f"--table {folder}: {summary} holds no object; the file is damaged: pass another run")
    for who in ("teacher", "student_before", "student_after"):
        if not isinstance(s.get(who), dict):
            raise UserError(
                f"--table {folder}: {summary} has no evaluation of the {who.replace('_', ' ')} ('{who}': "
                f"{s.get(who)!r}); pass finished OPSD run folders"
            )
    cell = lambda e: f"{common.acc_ci(e, 2)} / {e['format/boxed_only']:.2f} / {e['len/mean']:.1f}"
    try:
        mech = (s.get("mechanism3") or {}).get("after")
        m3 = (
            " / ".join(f"{mech[k]:.3f}" for k in ("kl/own_pi", "kl/geo_mean", "irreducible/-logZ"))
            if mech
            else "-"
        )
        who = [cell(s[k]) for k in ("teacher", "student_before", "student_after")]
        return [
            os.path.basename(os.path.normpath(folder)),
            c["pi"],
            c["loss"],
            c["seed"],
            s["steps"],
            *who,
            m3,
        ]
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        what = f"no {e}" if isinstance(e, KeyError) else f"a value of another kind ({e})"
        raise UserError(
            f"--table {folder}: its summary.json or config.json holds {what}, not what a finished "
            "train_opsd.py run writes; pass finished OPSD run folders"
        ) from None


def run_json(folder: str, name: str):
    """The JSON of `name` in a run folder given to --table, or a UserError naming the folder or
    file: missing (an unfinished run has no summary.json yet) or not valid JSON."""
    path = os.path.join(folder, name)
    if not os.path.isdir(folder):
        raise UserError(f"--table {folder}: no such run folder; pass finished train_opsd.py run folders")
    if not os.path.isfile(path):
        unfinished = " (a run still training, or stopped, has none yet)" if name == "summary.json" else ""
        raise UserError(f"--table {folder}: {path} not found{unfinished}; pass finished OPSD run folders")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (ValueError, RecursionError) as e:  # not JSON, not UTF-8, or more than Python reads
        raise UserError(
            f"--table {folder}: {path} is not readable JSON ({type(e).__name__}: {str(e)[:80]}); "
            "the file is damaged: pass another run"
        ) from None


if __name__ == "__main__":
    errors.run(main)
