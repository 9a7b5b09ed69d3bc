"""What a teacher does where OPD asks it: on the student's own prefixes (the prefix probe of
Mechanism 1) and at every position of the student's own samples (the teacher's fit of Fix 2).

What this file is
    `prefix_probe` lets the student write one response per problem, cuts it at fractions f of its
    length, and lets the teacher continue from each cut; the prefix plus the continuation is
    graded. f = 0 is the teacher alone, so the rows compare the teacher on its own ground with the
    teacher on the student's, split by whether the student's own answer was right.
    `teacher_fit` measures how close a teacher is to the student on the student's own samples:
    the exact reverse KL per token, its sampled-token estimate, the Top-k overlap, the teacher's
    mass on the student's Top-k and its rank of the sampled token. `format_probe_table` and
    `format_fit_table` print them. The command line runs both on one benchmark, with
    eval_math.py's sampler and presets and eval_cli.py's flag groups (model, data, sampling, output), and writes
    probe.jsonl (one line per problem and cut), fit.jsonl (the fit, one line per problem) and
    probe_summary.json into `--out`.

Paper (docs/paper.md)
    §4 Mechanism 1: the teacher scores prefixes it would not have written; the probe measures its
    accuracy after the student's prefixes against its accuracy alone. §4 Fix 2: choose (or adapt)
    a teacher by its closeness to the student where OPD asks it, not by its accuracy alone.

Command
    python probes.py --model STUDENT --probe-teacher TEACHER --bench synthetic

What it simplifies
    * One student response per problem and one teacher continuation per cut; the cut is a
      fraction of the response's tokens (`--probe-cut lines` moves it to the end of that line),
      not a step or sentence boundary.
    * The fit reads the student's samples at T = 1 (the rollouts OPD trains on) and reports token
      means over all problems together.
    * The command line probes the first benchmark of `--bench` alone.
"""

import argparse
import json
import math
import os
from typing import Optional

import torch

import common
import config
import data
import diagnostics
import errors
import eval_cli
import eval_math
import grader
import losses
import models
import rollout
from errors import UserError

# -----------------------------------------------------------------------------
# The prefix probe (Mechanism 1, §4)


def prefix_probe(
    student,
    teacher,
    tokenizer,
    examples: list,
    fractions=(0.0, 0.25, 0.5, 0.75),
    *,
    temperature: float = 0.6,
    top_p: float = 0.95,
    top_k: int = 0,
    max_new_tokens: int = 16384,
    batch_size: int = 32,
    seed: int = 0,
    teacher_pi: str = "none",
    cut: str = "tokens",
    out_path: Optional[str] = None,
    progress: bool = True,
) -> tuple:
    """The teacher's accuracy when it must continue the student's responses cut at fraction f.

    The student writes one response per problem. For each f, the teacher's context (`teacher_pi`,
    "none" = the student's prompt, as in OPD) is followed by the first floor(f * L) tokens of the
    student's response (L without its EOS; with `cut="lines"`, up to the end of that token's
    line: cut_at), and the teacher continues with up to
    `max_new_tokens` new tokens; the prefix plus the continuation is graded. f = 0 is the
    teacher alone, with the same prompts and seeds as `evaluate(teacher, ...)`. Student and
    teacher must share the tokenizer (as OPD requires). Returns (rows, records): one row per f
    with the accuracy overall and split by whether the student's own answer was right."""
    for f in fractions:
        if not 0.0 <= f <= 1.0:
            raise ValueError(f"prefix fractions must lie in [0, 1], got {f}")
    if cut not in CUTS:
        raise ValueError(f"cut must be one of {CUTS}, got {cut!r}")
    kw = dict(
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        seed=seed,
    )
    student_prompts = [data.context_ids(tokenizer, ex, "none") for ex in examples]
    teacher_ctx = [data.context_ids(tokenizer, ex, teacher_pi) for ex in examples]
    s_out = eval_math.sample_responses(
        student, tokenizer, student_prompts, k=1, progress="probe: student" if progress else None, **kw
    )[0]
    s_text = [tokenizer.decode(s["ids"], skip_special=True) for s in s_out]
    s_right = [grader.grade(t, ex.answer) for t, ex in zip(s_text, examples)]
    rows = [
        {
            "who": "student alone",
            "f": None,
            "acc": sum(s_right) / len(examples),
            "ci": diagnostics.wilson_ci(sum(s_right), len(examples)),
            "n": len(examples),
        }
    ]
    records = []
    for f in fractions:
        row, cut_records = teacher_after_cut(
            teacher, tokenizer, examples, teacher_ctx, s_out, s_right, f, cut=cut, progress=progress, **kw
        )
        rows.append(row)
        records += cut_records
    if out_path:
        eval_math.write_jsonl(out_path, records)
    return rows, records


CUTS = ("tokens", "lines")


def cut_at(ids: list, f: float, cut: str, tokenizer) -> int:
    """How many tokens of a response (`ids`, without its EOS) the teacher is given at fraction f:
    `tokens`, floor(f * L); `lines`, the same cut moved to the end of the line that holds its last
    token (after the first token from there on whose text holds a newline; the whole response when
    none does), so that the teacher never starts inside a line."""
    c = int(math.floor(f * len(ids)))
    if cut == "tokens" or c == 0:
        return c
    ends = (i + 1 for i in range(c - 1, len(ids)) if "\n" in tokenizer.decode([ids[i]]))
    return next(ends, len(ids))


def teacher_after_cut(
    teacher,
    tokenizer,
    examples: list,
    contexts: list,
    s_out: list,
    s_right: list,
    f: float,
    *,
    cut: str = "tokens",
    progress: bool,
    **kw,
) -> tuple:
    """One cut of the prefix probe: the teacher continues, after its context, the first tokens of
    each student response (`s_out`, sample_responses' dicts, graded `s_right`) that `cut_at` gives
    at f, and the prefix plus the continuation is graded. Returns (row, records): the accuracy
    overall and split by the student's own verdict, and one record per problem. `kw` are
    sample_responses' sampling settings."""
    cut_mode, cut = cut, [cut_at(s["ids"], f, cut, tokenizer) for s in s_out]
    prompts = [ctx + s["ids"][:c] for ctx, s, c in zip(contexts, s_out, cut)]
    t_out = eval_math.sample_responses(
        teacher, tokenizer, prompts, k=1, progress=f"probe: teacher f={f}" if progress else None, **kw
    )[0]
    right, records = [], []
    for i, (ex, s, c, t) in enumerate(zip(examples, s_out, cut, t_out)):
        text = tokenizer.decode(s["ids"][:c] + t["ids"], skip_special=True)
        ok = grader.grade(text, ex.answer)
        right.append(ok)
        records.append(
            {
                "id": ex.id,
                "f": f,
                "prefix_tokens": c,
                "student_correct": s_right[i],
                "correct": ok,
                "truncated": t["truncated"],
                "response": text,
            }
        )
    on_right = [r for r, s in zip(right, s_right) if s]
    on_wrong = [r for r, s in zip(right, s_right) if not s]
    row = {
        "who": "teacher alone" if f == 0 else "teacher after student prefix",
        "f": f,
        "cut": cut_mode,
        "acc": sum(right) / len(right),
        "ci": diagnostics.wilson_ci(sum(right), len(right)),
        "n": len(right),
        "acc_student_right": sum(on_right) / len(on_right) if on_right else None,
        "acc_student_wrong": sum(on_wrong) / len(on_wrong) if on_wrong else None,
    }
    return row, records


# -----------------------------------------------------------------------------
# The teacher's fit to the student (Fix 2, §4)


def teacher_fit(
    student,
    teacher,
    tokenizer,
    examples: list,
    *,
    k: int = 20,
    temperature: float = 1.0,
    top_p: float = 1.0,
    max_new_tokens: int = 80,
    batch_size: int = 32,
    seed: int = 0,
) -> dict:
    """How close a teacher is to a student where OPD asks it: at every position of the student's
    own sampled responses (§4 Fix 2: choose teachers by distribution closeness).

    The student writes one response per problem (EOS included, as OPD trains on it); the teacher
    reads the same prompt and response (rollout.score). Token means of: the exact reverse KL
    KL(p‖q) (`kl/full`), its sampled-token estimate log p(y) − log q(y) (`kl/reverse_est`), the
    student's Top-k overlap with the teacher's (`topk/overlap`), the teacher's mass on the
    student's Top-k (`topk/teacher_mass`), the teacher's rank of the sampled token (`topk/teacher_rank`,
    k + 1 outside its Top-k) and the teacher's log-prob of it (`logq/sampled`). Returns (those means
    over every token, with k, problems and tokens; one record per problem with the same means over
    its own tokens, for a paired comparison of teachers problem by problem)."""
    device = next(student.parameters()).device
    prompts = [data.context_ids(tokenizer, ex) for ex in examples]
    sums, n_tok, records = {}, 0, []
    for b, start in enumerate(range(0, len(prompts), batch_size)):
        batch = prompts[start : start + batch_size]
        gen = torch.Generator(device=device).manual_seed(seed * 1_000_003 + b)
        with torch.no_grad():
            responses = rollout.generate(
                student,
                batch,
                max_new_tokens,
                temperature=temperature,
                top_p=top_p,
                eos_token_ids=tokenizer.eos_token_ids,
                pad_token_id=tokenizer.pad_token_id,
                generator=gen,
            ).responses()
            ls, mask = rollout.score(student, batch, responses)  # (b, T, V)
            lt, _ = rollout.score(teacher, batch, responses)
            V = min(ls.shape[-1], lt.shape[-1])  # padded vocabulary rows map to no token
            ls, lt = ls[..., :V], lt[..., :V]
            tokens = rollout.pad_right(responses, 0, mask.device)  # (b, T) the sampled ids
            logp_y = losses.student_logprobs_at(ls, tokens[..., None])[..., 0]
            logq_y = losses.teacher_logprobs_at(lt, tokens[..., None])[..., 0]
            st = losses.topk_stats(ls, lt, k, tokens=tokens)
            per_token = {
                "kl/full": losses.full_rkl(ls, lt),
                "kl/reverse_est": logp_y - logq_y,
                "topk/overlap": st["overlap"],
                "topk/teacher_mass": st["teacher_mass"],
                "topk/teacher_rank": st["teacher_rank"],
                "logq/sampled": logq_y,
            }
        for key, v in per_token.items():
            sums[key] = sums.get(key, 0.0) + float(v.float()[mask].sum())
        n_tok += int(mask.sum())
        for i, ex in enumerate(examples[start : start + batch_size]):
            n_i = int(mask[i].sum())
            rec = {"id": ex.id, "tokens": n_i}
            rec.update(
                {key: float(v[i].float()[mask[i]].sum()) / max(n_i, 1) for key, v in per_token.items()}
            )
            records.append(rec)
    out = {key: v / max(n_tok, 1) for key, v in sums.items()}
    out.update({"k": k, "problems": len(examples), "tokens": n_tok})
    return out, records


# -----------------------------------------------------------------------------
# Tables


def format_fit_table(fits: dict) -> str:
    """One row per teacher: {name: teacher_fit(...)}."""
    rows = [
        [
            name,
            f"{f['kl/full']:.4f}",
            f"{f['kl/reverse_est']:.4f}",
            f"{f['topk/overlap']:.3f}",
            f"{f['topk/teacher_mass']:.3f}",
            f"{f['topk/teacher_rank']:.2f}",
            f["tokens"],
        ]
        for name, f in fits.items()
    ]
    return common.md_table(
        [
            "teacher",
            "KL(p‖q) per token",
            "sampled-token estimate",
            "Top-k overlap",
            "teacher mass on student Top-k",
            "teacher rank of sampled token",
            "tokens",
        ],
        rows,
    )


def format_probe_table(rows: list) -> str:
    """One row per prefix_probe row: who answers, the cut f, the accuracy overall and by the
    student's own verdict."""
    opt = lambda x: "–" if x is None else f"{x:.3f}"
    cells = [
        [
            r["who"],
            "–" if r["f"] is None else f"{r['f']:.2f}",
            f"{r['acc']:.3f} {eval_math.format_ci(r['ci'])}",
            opt(r.get("acc_student_right")),
            opt(r.get("acc_student_wrong")),
        ]
        for r in rows
    ]
    return common.md_table(
        ["who", "f", "accuracy (95% CI)", "acc. where student right", "acc. where student wrong"], cells
    )


# -----------------------------------------------------------------------------
# Command line


def build_parser() -> argparse.ArgumentParser:
    """The command line: eval_cli.py's groups for the student, the data, sampling and the output,
    and this file's group for the teacher and the cuts."""
    ap = argparse.ArgumentParser(
        description="Run the prefix probe of Mechanism 1 and measure the teacher's fit to the "
        "student (Fix 2) on the first benchmark of --bench. Sampling flags left unset come from "
        "the preset."
    )
    eval_cli.add_model_flags(ap, role="the student, whose responses the teacher continues and reads")
    eval_cli.add_data_flags(ap)
    eval_cli.add_sampling_flags(ap)
    add_probe_flags(ap)
    eval_cli.add_output_flags(
        ap, files="probe.jsonl (one line per problem and cut), fit.jsonl and probe_summary.json"
    )
    return ap


def add_probe_flags(ap: argparse.ArgumentParser) -> None:
    """The teacher to probe and the cut points of the student's responses."""
    g = ap.add_argument_group("prefix probe (Mechanism 1)")
    g.add_argument(
        "--probe-teacher",
        required=True,
        help="the teacher (name or path): run the prefix probe with it and measure its fit to "
        "the student (teacher_fit: reverse KL, Top-20 overlap on the student's samples)",
    )
    g.add_argument(
        "--probe-fractions",
        default="0,0.25,0.5,0.75",
        help="comma-separated cut points f of the student's responses (default: %(default)s)",
    )
    g.add_argument(
        "--probe-cut",
        choices=CUTS,
        default="tokens",
        help="where a cut falls: after floor(f x L) tokens, or at the end of the line that holds "
        "that token (default: %(default)s)",
    )


def parse_fractions(text: str) -> list:
    """The cut points of `--probe-fractions`, each in [0, 1) (a UserError otherwise)."""
    try:
        fractions = [float(x) for x in text.split(",")]
    except ValueError:
        raise UserError(f"--probe-fractions {text!r}: comma-separated numbers in [0, 1)") from None
    if not all(0 <= f < 1 for f in fractions):
        raise UserError(f"--probe-fractions {text}: every cut point must lie in [0, 1)")
    return fractions


def run_probe(args, model, tokenizer, bench: str, examples: list) -> None:
    """The prefix probe (Mechanism 1) and the teacher's fit to the student (Fix 2) on one benchmark;
    writes probe.jsonl, fit.jsonl (the fit per problem) and probe_summary.json and prints both tables."""
    teacher, t_tok = eval_cli.load_model(args, args.probe_teacher)
    models.check_compatible((model, tokenizer), (teacher, t_tok))  # the probe cuts token ids
    s = eval_cli.resolve_settings(args, bench)
    with torch.no_grad():
        rows, _ = prefix_probe(
            model,
            teacher,
            tokenizer,
            examples,
            parse_fractions(args.probe_fractions),
            temperature=s["temperature"],
            top_p=s["top_p"],
            top_k=s["top_k"],
            max_new_tokens=s["max_new_tokens"],
            batch_size=args.batch_size,
            seed=args.seed,
            cut=args.probe_cut,
            out_path=os.path.join(args.out, "probe.jsonl"),
            progress=not args.quiet,
        )
    # where OPD asks the teacher: the student's own samples at T = 1, the paper's rollouts
    fit, fit_records = teacher_fit(
        model,
        teacher,
        tokenizer,
        examples,
        k=20,
        max_new_tokens=s["max_new_tokens"],
        batch_size=args.batch_size,
        seed=args.seed,
    )
    with open(os.path.join(args.out, "fit.jsonl"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in fit_records)
    with open(os.path.join(args.out, "probe_summary.json"), "w") as f:
        json.dump(
            {
                "student": args.model,
                "teacher": args.probe_teacher,
                "bench": bench,
                "settings": s,
                "probe": rows,
                "fit": fit,
            },
            f,
            indent=2,
        )
    print(
        f"prefix probe on {bench}: student {args.model}, teacher {args.probe_teacher}, preset {s['preset']}"
    )
    print(format_probe_table(rows))
    print(f"\nteacher fit on the student's own samples (T = 1, {len(examples)} problems):")
    print(format_fit_table({args.probe_teacher: fit}))


def check_teacher_lengths(args, bench: str, examples: list, tok, context) -> None:
    """The teacher's longest sequences within its own context: after the prompt, the student's
    prefix (up to the largest cut of a response of --max-new-tokens) and a continuation of
    --max-new-tokens; a UserError naming the problem otherwise, before any weights load."""
    new = eval_cli.resolve_settings(args, bench)["max_new_tokens"]
    longest_prefix = math.floor(max(parse_fractions(args.probe_fractions)) * new)
    common.check_prompt_lengths(
        context,
        [data.context_ids(tok, ex) for ex in examples],
        longest_prefix + new,
        f"prompts of {bench} with a student prefix of up to {longest_prefix} tokens, for the teacher",
        examples,
    )


def check_unused(args) -> None:
    """eval_math.py's flags that the probe has no use for: it samples one response per problem
    after the bare student prompt, so a value given to any of them is refused by name."""
    given = {"--k": args.k, "--pi": None if args.pi == "none" else args.pi, "--rule": args.rule}
    given["--wrong-hint"] = "" if args.wrong_hint else None
    for flag, value in given.items():
        if value is not None:
            raise UserError(
                f"{flag} {value}".rstrip() + ": the probe samples one response per problem after the "
                "bare student prompt and does not use it; drop it (it applies to eval_math.py)"
            )


def main(argv=None) -> None:
    """The command line: check every flag and input, load the student and the teacher, then run the
    prefix probe and the teacher's fit on the first benchmark."""
    parser = build_parser()
    args = parser.parse_args(argv)
    check_unused(args)  # first: eval_math.py's advice for these flags does not apply to the probe
    bench = eval_cli.check_args(args, config.flags_of(parser))[0]
    parse_fractions(args.probe_fractions)  # checked here, before any file is read
    eval_cli.check_out(args, "probes.py")
    if args.threads:
        torch.set_num_threads(args.threads)
    examples = eval_cli.load_inputs(args, [bench])[bench]
    # the teacher's tokenizer before any weights load: the probe cuts the student's token ids
    teacher_tok, teacher_context = models.load_tokenizer(args.probe_teacher)
    models.check_compatible(models.load_tokenizer(args.model)[0], teacher_tok)
    check_teacher_lengths(args, bench, examples, teacher_tok, teacher_context)
    eval_cli.claim_out(args, "probes.py")  # the folder's lock, the one evaluations and training runs take too
    model, tokenizer = eval_cli.load_model(args, args.model)
    run_probe(args, model, tokenizer, bench, examples)


if __name__ == "__main__":
    errors.run(main)
