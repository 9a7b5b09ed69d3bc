"""Where prompts come from: the student prompt, the problem record (`Example`), the OPSD teacher
contexts (privileged-information modes), and the named datasets that `load_examples` returns.

Paper sections (docs/paper.md):
  §2.3  datasets: DAPO-Math-17k (OPD training), OpenThoughts-114k math rows with an extractable
        \\boxed{} answer (OPSD privileged information), MATH-500, AIME 2024, AIME 2025 (evaluation);
        the student prompt `{problem}\\n\\nPlease reason step by step, and put your final answer
        within \\boxed{}.` with DAPO-Math's built-in "Answer:" instruction stripped.
  §5    the OPSD teacher contexts: `none`, `answer_only`, `full`, `system_prompt`.

Every dataset becomes a list of `Example`s (bare problem, gold answer, optional reference
solution). The records come from data_files.py (the hub, through `datasets` when it is installed,
otherwise `huggingface_hub`, or a local .jsonl/.json/.parquet file, with its checks and errors) or,
for the tiny world's task, from tiny_world/task.py; both return plain fields, which
`load_examples` makes Examples, so neither imports this file:

    load_examples("math500")                        # hub: HuggingFaceH4/MATH-500, split test
    load_examples("math500", path="m500.jsonl")     # the same schema from a local file
    load_examples("my_problems.jsonl")              # any file with `problem` and `answer` fields
    load_examples("synthetic", n=200, split="eval") # the tiny world's task, no file at all
    python data.py --name synthetic --n 5           # print a few examples and their contexts

The synthetic task (docs/tiny_world.md) has its own contexts, short on purpose: the student's
message is the bare problem and the PI templates are one line, since with byte-level tokens every
character costs a position. Its shared rule (SYSTEM_RULE_SYNTHETIC, "answer with the final result
only") makes the target response `\\boxed{6}` alone.

Deliberate simplification: the examples are held in memory (data_files.py lists what its readers
simplify). A bad input raises data_files.DataError (an errors.UserError: exit code 2 and a message,
no traceback) naming the file, line or row, and field.
"""

import argparse
import dataclasses
import os
from typing import Optional

import data_files
import errors
from tiny_world import partition, task

# -----------------------------------------------------------------------------
# Prompts (§2.3) and privileged-information contexts (§5)

BOXED_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."

PI_MODES = ("none", "answer_only", "full", "system_prompt")

# The shared rules of the `system_prompt` mode. The math one is our wording of the paper code's
# conciseness instruction (§5); the synthetic one is the tiny world's rule (target: `\boxed{N}`).
SYSTEM_RULE_MATH = (
    "Solve the problem concisely and correctly. Be direct: do not restate the "
    "problem and skip every step that is not needed to reach the answer."
)
SYSTEM_RULE_SYNTHETIC = "Answer with the final result only."

ANSWER_ONLY_TEMPLATE = (
    "{prompt}\n\nThe correct final answer to this problem is: {hint}\n"
    "Now solve the problem step by step and arrive at this same answer."
)
# The tiny world's contexts are short on purpose: with byte-level tokens every character is a
# token, and the paper's instruction alone (71 characters) is longer than a synthetic problem and
# its worked answer together, so it would triple the cost of every tiny-world step for nothing.
SYNTHETIC_ANSWER_ONLY_TEMPLATE = "{prompt}\nThe answer is {hint}."
SYNTHETIC_FULL_TEMPLATE = "{problem}\nA solution:\n{solution}"
FULL_TEMPLATE = (
    "{problem}\n\nHere is a reference solution to this problem:\n{solution}\n\n"
    "Make sure you understand every step of the reference solution, then write your "
    "own step-by-step solution that reaches the same final answer.\n\n{instruction}"
)


def student_prompt(problem: str) -> str:
    """The user message of the student (§2.3): the bare problem and the boxed instruction."""
    return f"{problem}\n\n{BOXED_INSTRUCTION}"


@dataclasses.dataclass
class Example:
    """One problem. `answer` is what the grader compares with; `solution` is the reference
    solution (the `full` PI, the SFT target), possibly empty; `hint` overrides the answer shown
    in the `answer_only` context (to measure what a wrong hint does)."""

    id: str
    problem: str
    answer: str
    solution: str = ""
    source: str = ""
    hint: Optional[str] = None
    meta: dict = dataclasses.field(default_factory=dict)
    # Where the record was read ("file:line", "file row N"), for error messages only: not part of
    # the example's identity (equality, a stream's fingerprint), so a moved file resumes.
    where: str = dataclasses.field(default="", compare=False, repr=False, metadata={"identity": False})

    @property
    def prompt(self) -> str:
        """The student's user message: §2.3's prompt, or the bare problem in the tiny world."""
        return self.problem if self.source == "synthetic" else student_prompt(self.problem)


def default_rule(example: Example) -> str:
    return SYSTEM_RULE_SYNTHETIC if example.source == "synthetic" else SYSTEM_RULE_MATH


def context_messages(example: Example, pi: str = "none", rule: Optional[str] = None) -> list:
    """The chat messages in front of the response, for the student (`pi="none"`) or for an OPSD
    teacher that also sees privileged information (§5):

      none          exactly the student's context (the control: OPSD loss must be ~0)
      answer_only   the student's message, then the final answer and an instruction to reach it
      full          the problem, the reference solution, an instruction to re-derive it
      system_prompt a shared rule as the system message, then the student's message

    Every mode ends where the assistant's turn begins, so the student's response tokens follow
    unchanged (the tokenizer's chat format adds the assistant header)."""
    if pi not in PI_MODES:
        raise ValueError(f"unknown PI mode {pi!r}; choose one of {', '.join(PI_MODES)}")
    system = None
    if pi == "none":
        user = example.prompt
    elif pi == "answer_only":
        hint = example.hint if example.hint is not None else example.answer
        template = SYNTHETIC_ANSWER_ONLY_TEMPLATE if example.source == "synthetic" else ANSWER_ONLY_TEMPLATE
        user = template.format(prompt=example.prompt, hint=hint)
    elif pi == "full":
        if not example.solution:
            raise ValueError(
                f"example {example.id!r} has no reference solution, which PI mode "
                f"'full' shows the teacher; use a dataset with solutions "
                f"(openthoughts, synthetic) or another PI mode"
            )
        if example.source == "synthetic":
            user = SYNTHETIC_FULL_TEMPLATE.format(problem=example.problem, solution=example.solution)
        else:
            user = FULL_TEMPLATE.format(
                problem=example.problem, solution=example.solution, instruction=BOXED_INSTRUCTION
            )
    else:  # system_prompt
        system = rule if rule is not None else default_rule(example)
        user = example.prompt
    messages = [{"role": "user", "content": user}]
    if system is not None:
        messages.insert(0, {"role": "system", "content": system})
    return messages


def context_ids(tokenizer, example: Example, pi: str = "none", rule: Optional[str] = None) -> list:
    """Token ids of `context_messages` in the tokenizer's chat format, ending with the assistant
    header: `context_ids(...) + response_ids` is what the model scores."""
    messages = context_messages(example, pi, rule)
    system = messages[0]["content"] if messages[0]["role"] == "system" else None
    return list(tokenizer.chat_prompt(messages[-1]["content"], system=system))


def target_response(example: Example, pi: str = "none") -> str:
    """The reference response a model should write in a given context (the SFT target).

    Under the synthetic task's shared rule it is the boxed result alone; otherwise the reference
    solution (privileged information does not change what a correct answer looks like)."""
    if pi == "system_prompt" and example.source == "synthetic":
        return f"\\boxed{{{example.answer}}}"
    if not example.solution:
        raise ValueError(f"example {example.id!r} has no reference solution to train on")
    return example.solution


# -----------------------------------------------------------------------------
# The named datasets

# name -> (hub repository, config, split, parser of data_files.py)
DATASETS = {
    "dapo": ("BytedTsinghua-SIA/DAPO-Math-17k", None, "train", data_files.parse_dapo),
    "openthoughts": ("open-thoughts/OpenThoughts-114k", "metadata", "train", data_files.parse_openthoughts),
    "math500": ("HuggingFaceH4/MATH-500", None, "test", data_files.parse_eval),
    "aime24": ("math-ai/aime24", None, "test", data_files.parse_eval),
    "aime25": ("math-ai/aime25", None, "test", data_files.parse_eval),
}


def load_examples(
    name: str, path: Optional[str] = None, limit: Optional[int] = None, **synthetic_kwargs
) -> list:
    """The examples of a named dataset (DATASETS, or "synthetic"), or of a local file.

    `name` may itself be a .jsonl/.json/.parquet path (read with `data_files.parse_eval`). `path`
    reads a named dataset from a local file in its hub schema instead of the hub. `limit` keeps the
    first examples. `synthetic_kwargs` go to tiny_world.task.problems (`n` defaults to 500, split
    'eval'), or with `part` to tiny_world.partition.problems (a set of docs/protocol.md's partition).

    `dapo` keeps only the first record of each (problem, answer) and prints on stderr how many
    it dropped: the hub's DAPO-Math-17k repeats each of its problems many times, which would make
    an "epoch" many passes over the same problems. Other datasets are
    returned as read. A bad input (unknown name, missing file, unreadable or malformed records,
    no examples) raises data_files.DataError naming the file, line and field."""
    if name == "synthetic":
        if path is not None:
            raise data_files.DataError(f"the synthetic task is generated, not read: drop the path {path}")
        if synthetic_kwargs.get("part") is not None:  # a set of docs/protocol.md's partition
            kw = dict(synthetic_kwargs)
            part, n = kw.pop("part"), kw.pop("n", None)
            if kw.pop("split", "eval") != "eval" or set(kw) - {"hard_frac", "flagged_frac"}:
                raise ValueError(f"a part of the partition is a held-out set with no options {sorted(kw)}")
            return [Example(**fields) for fields in partition.problems(part, n, **kw)][:limit]
        kw = {"n": 500, "split": "eval", **synthetic_kwargs}
        kw.pop("part", None)
        return [Example(**fields) for fields in task.problems(**kw)][:limit]
    if synthetic_kwargs:
        raise ValueError(f"options {sorted(synthetic_kwargs)} only apply to the synthetic task")
    known = f"{', '.join(DATASETS)}, synthetic"
    if name in DATASETS:
        repo, config, split, parser = DATASETS[name]
        if path:
            records, origin = data_files.file_records(path), path
        else:
            records, origin = data_files.hub_records(repo, config, split), f"hub: {repo}"
    elif name.endswith(data_files.DATA_EXTENSIONS) or os.path.exists(name):
        parser, records, origin = data_files.parse_eval, data_files.file_records(name), None
    elif data_files.looks_like_path(name):
        raise data_files.DataError(
            f"{name}: no such file or folder (a dataset is a local "
            f".jsonl/.json/.parquet file or one of {known})"
        )
    else:
        raise data_files.DataError(
            f"unknown dataset {name!r}: use one of {known}, or a path to a "
            f".jsonl/.json/.parquet file (a name ending so is read as a file)"
        )
    fields = data_files.parse_records(records, parser, name, origin, dedupe=name == "dapo")
    examples = [Example(**f) for f in fields]
    return examples[:limit] if limit is not None else examples


# -----------------------------------------------------------------------------
# A look at the data from the command line


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(
        description="Print a few examples of a dataset and the student and teacher contexts built from them."
    )
    ap.add_argument(
        "--name",
        default="synthetic",
        help="dataset: synthetic, dapo, openthoughts, math500, aime24, aime25, or a "
        ".jsonl/.json/.parquet path",
    )
    ap.add_argument("--path", default=None, help="read the named dataset from this local file")
    ap.add_argument("--n", type=int, default=3, help="how many examples to print")
    ap.add_argument("--pi", default="none", choices=PI_MODES, help="teacher context to show")
    ap.add_argument(
        "--hard-frac",
        type=float,
        default=0.0,
        help="synthetic only: fraction of hard (2-digit product) problems",
    )
    args = ap.parse_args(argv)
    kw = {"n": args.n, "hard_frac": args.hard_frac} if args.name == "synthetic" else {}
    for ex in load_examples(args.name, path=args.path, limit=args.n, **kw):
        print(f"--- {ex.id}  answer={ex.answer!r}")
        for m in context_messages(ex, args.pi):
            print(f"[{m['role']}] {m['content']}")
        if ex.solution:
            print(f"[reference] {ex.solution}")


if __name__ == "__main__":
    errors.run(main)
