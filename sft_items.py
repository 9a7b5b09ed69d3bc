"""What SFT trains on: (prompt, response) items from each of train_sft.py's sources.

What this file is
    `Item` and `make_item`: one sequence, the chat prompt's ids and the response's ids closed by the
    end-of-turn token (`end_of_turn_id`); train_sft.nll_sum supervises the response alone.
    `build_items` makes the items of a config's `source`:
      reference  `reference_items`: each problem's reference solution in the student's context;
      traces     `teacher_traces`: a teacher's responses, kept by `keep_trace` (Fix 3's filter);
      samples    the same responses, none dropped, up to `rollout_tokens(RUN)` teacher tokens when
                 --tokens-of gives an OPD run (sequence-level distillation at OPD's teacher cost);
      jsonl      `jsonl_items`: a file of prompt/response pairs, bad lines named.
    The problems of reference, traces and samples come from `load_problems`; a teacher's responses
    are cached in the run folder (traces.jsonl), so that a resumed run trains on the same items.

Paper (docs/paper.md)
    §4 Fix 3: SFT on teacher traces filtered for a correct boxed answer and no repetition.
"""

import dataclasses
import os

import torch

import common
import data
import data_files
import diagnostics
import errors
import eval_math
import grader
import models
import run_folder
from errors import UserError

SOURCES = ("reference", "traces", "samples", "jsonl")
FROM_TEACHER = ("traces", "samples")  # the sources a teacher writes


@dataclasses.dataclass
class Item:
    id: str
    prompt: list  # chat prompt ids, ending with the assistant header
    response: list  # response ids, ending with the end-of-turn id
    kind: str  # plain / hint / rule / hard-hint / hard-plain / trace / jsonl
    # "file:line" of a jsonl item, for error messages only (not part of the item's identity)
    where: str = dataclasses.field(default="", compare=False, metadata={"identity": False})


def end_of_turn_id(tok) -> int:
    """The id that closes an assistant turn (<|im_end|> for Qwen/ChatML, <|eot_id|> for Llama 3)."""
    if tok.is_tiny:
        return models.TINY_IDS["<|im_end|>"]
    for name in ("<|im_end|>", "<|eot_id|>", "<|end_of_turn|>"):
        i = tok.hf.convert_tokens_to_ids(name)
        if isinstance(i, int) and i in tok.eos_token_ids:
            return i
    return tok.eos_token_ids[0]


def make_item(tok, id_, prompt_ids, response_text, kind) -> Item:
    return Item(id_, list(prompt_ids), tok.encode(response_text) + [end_of_turn_id(tok)], kind)


def rollout_tokens(run: str) -> int:
    """The response tokens of a finished OPD run's student rollouts: the sum of its training
    records' `tokens` (the tokens the teacher scored)."""
    if not os.path.exists(os.path.join(run, "summary.json")):
        raise UserError(f"--tokens-of {run}: not a finished OPD run (no summary.json); finish it first")
    steps, _ = run_folder.read_log(run)
    if not steps or any("tokens" not in r for r in steps):
        raise UserError(f"--tokens-of {run}: its metrics.jsonl has no `tokens` on every step: not an OPD run")
    return sum(r["tokens"] for r in steps)


# -----------------------------------------------------------------------------
# Fix 3's trace filter (§4): keep a teacher trace only if it finished,
# the grader accepts its answer, and it does not repeat itself.


def keep_trace(ids, text, gold, finished, max_rep):
    """(keep?, reason) for one teacher response (`ids` without the EOS)."""
    if not finished:
        return False, "truncated"
    if not grader.grade(text, gold):
        return False, "wrong" if grader.extract_boxed(text) is not None else "no_box"
    if diagnostics.repetition_ratio(ids) > max_rep:
        return False, "repetitive"
    return True, "kept"


def teacher_traces(cfg: dict, tok, examples: list) -> tuple:
    """Sample the teacher on the problems (the student's context), cache to traces.jsonl: with
    --source traces, the responses keep_trace keeps; with samples, every response, the problems
    taken in order until their responses hold cfg["teacher_tokens"] tokens (when set; a
    response's generated tokens, its end of turn included, as OPD counts a rollout's)."""
    teacher, t_tok = models.load(cfg["teacher"])
    models.check_compatible(tok, t_tok)
    prompts = [data.context_ids(tok, ex, "none") for ex in examples]
    with torch.no_grad():
        samples = eval_math.sample_responses(
            teacher,
            t_tok,
            prompts,
            k=cfg["trace_samples"],
            temperature=cfg["trace_temperature"],
            top_p=cfg["trace_top_p"],
            max_new_tokens=cfg["trace_max_new_tokens"],
            batch_size=cfg["eval_batch_size"],
            seed=cfg["seed"],
            progress="teacher traces",
        )
    del teacher
    records, counts, budget, used = [], {}, cfg.get("teacher_tokens"), 0
    for j, per_prompt in enumerate(samples):
        for ex, s in zip(examples, per_prompt):
            text = t_tok.decode(s["ids"], skip_special=True)
            if cfg["source"] == "samples":
                if budget is not None and used >= budget:
                    break
                keep, why, used = True, "kept", used + s["length"]
            else:
                keep, why = keep_trace(s["ids"], text, ex.answer, s["finished"], cfg["max_rep"])
            counts[why] = counts.get(why, 0) + 1
            if keep:
                records.append(
                    {
                        "id": f"{ex.id}:{j}",
                        "problem": ex.problem,
                        "answer": ex.answer,
                        "source": ex.source,
                        "response": text,
                    }
                )
    if budget is not None and used < budget:
        raise errors.UserError(
            f"--tokens-of {cfg['tokens_of']}: the teacher's responses to all {len(examples)} problems "
            f"hold {used:,} tokens, fewer than the run's {budget:,}; raise --n-train"
        )
    if budget is not None:
        counts["teacher_tokens"], counts["budget"] = used, budget
    eval_math.write_jsonl(os.path.join(cfg["out"], "traces.jsonl"), records)
    common.say(f"teacher traces: {counts} -> {len(records)} kept, cached in {cfg['out']}/traces.jsonl")
    return records, counts


# -----------------------------------------------------------------------------
# The training items of each source


def load_problems(cfg: dict, **synthetic) -> list:
    if cfg["data"] == "synthetic":
        return data.load_examples(
            "synthetic", n=cfg["n_train"], split="train", seed=cfg["data_seed"], **synthetic
        )
    return data.load_examples(cfg["data"], path=cfg["data_path"], limit=cfg["n_train"])


def reference_items(tok, examples: list) -> list:
    """Each problem's reference solution in the student's plain context (the `reference` source;
    the tiny world's mixes of contexts are tiny_world/mix.py's)."""
    return [
        make_item(
            tok,
            f"{ex.id}:plain",
            data.context_ids(tok, ex, "none"),
            data.target_response(ex, "none"),
            "plain",
        )
        for ex in examples
    ]


def jsonl_items(path: str, tok) -> list:
    """Items from a jsonl of {"prompt": str, "response": str[, "system": str]} lines."""
    items = []
    for line, rec in data_files.read_records(path):
        for field in ("prompt", "response"):
            v = rec.get(field)
            if not isinstance(v, str) or not v.strip():
                got = "missing" if v is None else f"{type(v).__name__} {str(v)[:30]!r}"
                raise data_files.DataError(
                    f"{path}:{line}: field '{field}' must be non-empty text, got "
                    f"{got}; each line needs prompt and response strings"
                )
        system = rec.get("system")
        if system is not None and not isinstance(system, str):
            raise data_files.DataError(f"{path}:{line}: field 'system' must be text when present")
        items.append(
            make_item(
                tok,
                f"{os.path.basename(path)}:{line}",
                tok.chat_prompt(rec["prompt"], system=system),
                rec["response"],
                "jsonl",
            )
        )
        items[-1].where = f"{path}:{line}"
    if not items:
        raise data_files.DataError(
            f"{path}: no prompt/response pairs (the file is empty); SFT needs at least one line"
        )
    return items


def build_items(cfg: dict, tok) -> tuple:
    """The items of cfg["source"] and what was kept; a teacher's responses are cached in the run folder."""
    stats = {}
    if cfg["source"] == "jsonl":
        items = jsonl_items(cfg["data_path"], tok)
    elif cfg["source"] == "reference":
        items = reference_items(tok, load_problems(cfg))
    else:
        cached = os.path.join(cfg["out"], "traces.jsonl")
        if cfg["resume"] and os.path.exists(cached):
            records = [rec for _, rec in data_files.read_records(cached)]
        else:
            records, stats = teacher_traces(cfg, tok, load_problems(cfg))
        if not records:
            raise data_files.DataError(
                f"the teacher {cfg['teacher']} wrote no trace that passed the filter "
                f"({stats}); check the teacher, or raise --trace-max-new-tokens"
            )
        items = [
            make_item(
                tok,
                r["id"],
                data.context_ids(
                    tok, data.Example("", r["problem"], r["answer"], source=r.get("source", "")), "none"
                ),
                r["response"],
                "trace" if cfg["source"] == "traces" else "sample",
            )
            for r in records
        ]
    kinds = {}
    for it in items:
        kinds[it.kind] = kinds.get(it.kind, 0) + 1
    return items, {"items": len(items), "kinds": kinds, "trace_filter": stats}
