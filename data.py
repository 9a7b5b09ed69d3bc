"""Where prompts come from: the paper's math datasets, the tiny world's synthetic task, the
student prompt, and the OPSD teacher contexts (privileged-information modes).

Paper sections (docs/paper.md):
  §2.3  datasets: DAPO-Math-17k (OPD training), OpenThoughts-114k math rows with an extractable
        \\boxed{} answer (OPSD privileged information), MATH-500, AIME 2024, AIME 2025 (evaluation);
        the student prompt `{problem}\\n\\nPlease reason step by step, and put your final answer
        within \\boxed{}.` with DAPO-Math's built-in "Answer:" instruction stripped.
  §5    the OPSD teacher contexts: `none`, `answer_only`, `full`, `system_prompt`.

Every dataset becomes a list of `Example`s (bare problem, gold answer, optional reference
solution). Loaders read the hub (through `datasets` when it is installed, otherwise through
`huggingface_hub`) or a local .jsonl/.json file (.parquet too when `pyarrow` is installed):

    load_examples("math500")                        # hub: HuggingFaceH4/MATH-500, split test
    load_examples("math500", path="m500.jsonl")     # the same schema from a local file
    load_examples("my_problems.jsonl")              # any file with `problem` and `answer` fields
    load_examples("synthetic", n=200, split="eval") # the tiny world's task, no file at all
    python data.py --name synthetic --n 5           # print a few examples and their contexts

The synthetic task (the tiny world, docs/tiny_world.md): integer expressions over + - * with 1-3
operations on single digits (no a*b*c chains), worked one operation at a time (multiplication
first, then left to right) and ending in \\boxed{}: `What is 3+4*2-5?` -> `=3+8-5\\n=11-5\\n=6\\n\\boxed{6}`.
The student's message is the bare problem and the PI templates are one line: with byte-level
tokens every character costs a position. Train and eval problems never overlap (an expression's
split is a hash of its text). Two kinds of privileged information change what a model should do:
  * a shared system rule (SYSTEM_RULE_SYNTHETIC, "answer with the final result only"), under which
    the target response is `\\boxed{6}` alone, and
  * a per-instance hint (the `answer_only` context). A hint is ignored when the worked steps always
    yield the answer, so a fraction `hard_frac` of problems are products of two 2-digit numbers,
    written as one step (`=1081`): a tiny model cannot compute them, so the hint is the only way
    to answer them (and a wrong hint, `Example.hint`, shows whether a model reads it).

Deliberate simplifications: OpenThoughts rows are kept only when their reference solution has
exactly one distinct \\boxed{} answer (as the authors' filter does); records are held in memory
(17k DAPO problems are a few MB); a .json file must hold a list of objects.
"""
import argparse
import dataclasses
import glob
import hashlib
import json
import os
import random
import re
from typing import Iterable, Iterator, Optional

# -----------------------------------------------------------------------------
# Prompts (§2.3) and privileged-information contexts (§5)

BOXED_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."

# DAPO-Math-17k ships every problem wrapped in an "Answer:"-style instruction (§2.3); the paper
# strips it and uses BOXED_INSTRUCTION instead.
DAPO_PREFIX = ("Solve the following math problem step by step. The last line of your response "
               "should be of the form Answer: $Answer (without quotes) where $Answer is the answer "
               "to the problem.")
DAPO_SUFFIX = 'Remember to put your answer on its own line after "Answer:".'

PI_MODES = ("none", "answer_only", "full", "system_prompt")

# The shared rules of the `system_prompt` mode. The math one is our wording of the paper code's
# conciseness instruction (§5); the synthetic one is the tiny world's rule (target: `\boxed{N}`).
SYSTEM_RULE_MATH = ("Solve the problem concisely and correctly. Be direct: do not restate the "
                    "problem and skip every step that is not needed to reach the answer.")
SYSTEM_RULE_SYNTHETIC = "Answer with the final result only."

ANSWER_ONLY_TEMPLATE = ("{prompt}\n\nThe correct final answer to this problem is: {hint}\n"
                        "Now solve the problem step by step and arrive at this same answer.")
# The tiny world's contexts are short on purpose: with byte-level tokens every character is a
# token, and the paper's instruction alone (71 characters) is longer than a synthetic problem and
# its worked answer together, so it would triple the cost of every tiny-world step for nothing.
SYNTHETIC_ANSWER_ONLY_TEMPLATE = "{prompt}\nThe answer is {hint}."
SYNTHETIC_FULL_TEMPLATE = "{problem}\nA solution:\n{solution}"
FULL_TEMPLATE = ("{problem}\n\nHere is a reference solution to this problem:\n{solution}\n\n"
                 "Make sure you understand every step of the reference solution, then write your "
                 "own step-by-step solution that reaches the same final answer.\n\n{instruction}")


def student_prompt(problem: str) -> str:
    """The user message of the student (§2.3): the bare problem and the boxed instruction."""
    return f"{problem}\n\n{BOXED_INSTRUCTION}"


def strip_dapo_instruction(text: str) -> str:
    """The bare problem inside a DAPO-Math-17k prompt: the "Answer:" prefix and suffix removed.

    Text without the wrapper is returned stripped but otherwise unchanged."""
    s = text.strip()
    if s.startswith(DAPO_PREFIX):
        s = s[len(DAPO_PREFIX):]
    if s.endswith(DAPO_SUFFIX):
        s = s[:-len(DAPO_SUFFIX)]
    return s.strip()


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
            raise ValueError(f"example {example.id!r} has no reference solution, which PI mode "
                             f"'full' shows the teacher; use a dataset with solutions "
                             f"(openthoughts, synthetic) or another PI mode")
        if example.source == "synthetic":
            user = SYNTHETIC_FULL_TEMPLATE.format(problem=example.problem, solution=example.solution)
        else:
            user = FULL_TEMPLATE.format(problem=example.problem, solution=example.solution,
                                        instruction=BOXED_INSTRUCTION)
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
# The synthetic task of the tiny world

SYNTHETIC_EVAL_FRAC = 0.1  # fraction of all expressions that belong to the eval split


def synthetic_split(expr: str, eval_frac: float = SYNTHETIC_EVAL_FRAC) -> str:
    """'eval' or 'train', a pure function of the expression text: the splits never overlap."""
    h = int(hashlib.sha256(expr.encode()).hexdigest()[:8], 16)
    return "eval" if h % 10_000 < eval_frac * 10_000 else "train"


def _tokens(expr: str) -> list:
    """'3+4*2' -> [3, '+', 4, '*', 2]; a leading '-' belongs to the first number."""
    out = []
    for m in re.finditer(r"(?<![\d])-?\d+|[+\-*]", expr):
        t = m.group()
        out.append(int(t) if t.lstrip("-").isdigit() else t)
    return out


def _render(tokens: list) -> str:
    return "".join(str(t) for t in tokens)


def synthetic_solution(expr: str) -> tuple:
    """(worked solution, answer) for an expression: one line per operation, multiplication first,
    then left to right, each line the whole rewritten expression; then the boxed answer."""
    tokens = _tokens(expr)
    lines = []
    while len(tokens) > 1:
        ops = tokens[1::2]
        i = 2 * ops.index("*") + 1 if "*" in ops else 1  # index of the operator to apply
        a, op, b = tokens[i - 1], tokens[i], tokens[i + 1]
        value = a * b if op == "*" else a + b if op == "+" else a - b
        tokens = tokens[:i - 1] + [value] + tokens[i + 2:]
        lines.append("=" + _render(tokens))
    answer = str(tokens[0])
    lines.append(f"\\boxed{{{answer}}}")
    return "\n".join(lines), answer


def synthetic_examples(n: int, *, split: str = "train", seed: int = 0, min_ops: int = 1,
                       max_ops: int = 3, max_operand: int = 9, hard_frac: float = 0.0,
                       hard_min: int = 11, hard_max: int = 99,
                       eval_frac: float = SYNTHETIC_EVAL_FRAC) -> list:
    """`n` distinct problems of one split, reproducible from `seed`.

    Difficulty: `min_ops`..`max_ops` operations (+ - *) on operands 0..`max_operand`, never two
    multiplications in a row (so every product is a times-table fact and the steps need only it
    and addition/subtraction of the results); a fraction
    `hard_frac` are instead a product of two numbers in `hard_min`..`hard_max`, solved in one line
    (meant to be unsolvable without the answer hint at the tiny models' size)."""
    if split not in ("train", "eval"):
        raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
    if not 1 <= min_ops <= max_ops:
        raise ValueError(f"need 1 <= min_ops <= max_ops, got min_ops={min_ops}, max_ops={max_ops}")
    if max_operand < 1 or not 0.0 <= hard_frac <= 1.0 or not 0 <= hard_min <= hard_max:
        raise ValueError("need max_operand >= 1, 0 <= hard_frac <= 1, 0 <= hard_min <= hard_max")
    rng = random.Random(f"synthetic:{split}:{seed}")
    seen, out, misses = set(), [], 0
    while len(out) < n:
        misses += 1
        if misses > 20_000:  # this many draws in a row gave nothing new: the space is exhausted
            raise ValueError(f"found only {len(out)} distinct {split} problems of the {n} asked for "
                             f"(ops {min_ops}-{max_ops}, operands 0-{max_operand}); the problem "
                             f"space is too small: ask for fewer, or raise max_ops or max_operand")
        hard = rng.random() < hard_frac
        if hard:
            expr = f"{rng.randint(hard_min, hard_max)}*{rng.randint(hard_min, hard_max)}"
        else:
            k = rng.randint(min_ops, max_ops)
            parts = [str(rng.randint(0, max_operand))]
            for _ in range(k):  # no a*b*c: every product is a times-table fact
                parts += [rng.choice("+-" if parts[-2:-1] == ["*"] else "+-*"), str(rng.randint(0, max_operand))]
            expr = "".join(parts)
        if expr in seen or synthetic_split(expr, eval_frac) != split:
            continue
        seen.add(expr)
        misses = 0
        solution, answer = synthetic_solution(expr)
        digest = hashlib.sha256(expr.encode()).hexdigest()[:10]
        out.append(Example(id=f"synth-{digest}", problem=f"What is {expr}?", answer=answer,
                           solution=solution, source="synthetic",
                           meta={"expr": expr, "ops": len(_tokens(expr)) // 2, "hard": hard}))
    return out


# -----------------------------------------------------------------------------
# Reading records: local files and the hub, with errors that name file, line and field

class DataError(ValueError):
    """A dataset problem, with where it is (`file:line`) and which field."""


class _FieldError(Exception):
    def __init__(self, field: str, problem: str):
        super().__init__(field, problem)
        self.field, self.problem = field, problem


def read_records(path: str) -> Iterator[tuple]:
    """(line, record) pairs of a .jsonl, .json (a list of objects) or .parquet file."""
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file")
    if path.endswith(".parquet"):
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise DataError(f"{path}: reading parquet needs pyarrow (pip install pyarrow), or "
                            f"convert the file to jsonl") from None
        for i, rec in enumerate(pq.read_table(path).to_pylist(), start=1):
            yield i, rec
        return
    if path.endswith(".json"):
        with open(path, encoding="utf-8") as f:
            try:
                data = json.load(f)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
        if not isinstance(data, list):
            raise DataError(f"{path}: a .json dataset must be a list of objects; use .jsonl "
                            f"for one object per line")
        for i, rec in enumerate(data, start=1):
            if not isinstance(rec, dict):
                raise DataError(f"{path}: item {i} is a {type(rec).__name__}, not an object")
            yield i, rec
        return
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{i}: not valid JSON ({e.msg} at column {e.colno}); "
                                f"each line must hold one JSON object") from None
            if not isinstance(rec, dict):
                raise DataError(f"{path}:{i}: a line holds a {type(rec).__name__}, "
                                f"not a JSON object")
            yield i, rec


def hub_data_files(local_dir: str, split: str, config: Optional[str] = None) -> list:
    """The data files of one split inside a downloaded dataset repository (used when `datasets`
    is not installed): files under the config's folder if there is one, whose name mentions the
    split; a repository with a single data file uses it for every split."""
    files = sorted(p for ext in ("jsonl", "json", "parquet")
                   for p in glob.glob(os.path.join(local_dir, "**", f"*.{ext}"), recursive=True))
    files = [p for p in files if not os.path.basename(p).startswith(("dataset_info", "."))]
    rel = {p: os.path.relpath(p, local_dir).replace(os.sep, "/") for p in files}
    if config:
        in_config = [p for p in files if rel[p].split("/")[0] == config]
        files = in_config or files
    chosen = [p for p in files if re.search(rf"(^|[/_\-.]){re.escape(split)}([/_\-.]|$)", rel[p])]
    if not chosen and len(files) == 1:
        chosen = files
    if not chosen:
        raise DataError(f"{local_dir}: no data file for split {split!r} (config {config!r}) among "
                        f"{[rel[p] for p in files] or 'no jsonl/json/parquet files'}")
    return chosen


def _hub_records(repo: str, config: Optional[str], split: str) -> Iterator[tuple]:
    """(where, record) pairs of a hub dataset."""
    try:
        import datasets
    except ImportError:
        datasets = None
    if datasets is not None:
        ds = datasets.load_dataset(repo, config, split=split)
        for i, rec in enumerate(ds):
            yield f"hub:{repo}[{split}] row {i}", rec
        return
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise DataError(f"loading {repo} from the hub needs `datasets` or `huggingface_hub` "
                        f"(pip install datasets), or pass a local file with --data-path") from None
    patterns = [f"{config}/*"] if config else ["*.jsonl", "*.json", "*.parquet"]
    local = snapshot_download(repo_id=repo, repo_type="dataset", allow_patterns=patterns)
    for path in hub_data_files(local, split, config):
        for line, rec in read_records(path):
            yield f"{path}:{line}", rec


# -----------------------------------------------------------------------------
# Record parsers: one per dataset schema. They return an Example, or None to filter a record out
# (OpenThoughts' non-math rows), and raise _FieldError for a malformed record.

def _text(rec: dict, *names: str, required: bool = True) -> str:
    """The first present field of `names` as a non-empty string (numbers are converted)."""
    for name in names:
        if name in rec and rec[name] is not None:
            v = rec[name]
            if isinstance(v, bool) or not isinstance(v, (str, int, float)):
                raise _FieldError(name, f"expected text, got {type(v).__name__}")
            v = str(v).strip()
            if not v:
                raise _FieldError(name, "is empty")
            return v
    if required:
        raise _FieldError(" or ".join(names), "missing")
    return ""


def boxed_answers(text: str) -> list:
    """The contents of every \\boxed{...} in a reference solution, in order (nested braces ok)."""
    out = []
    for m in re.finditer(r"\\boxed\s*\{", text):
        depth, j = 1, m.end()
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        if depth == 0:
            out.append(text[m.end():j - 1].strip())
    return out


def parse_dapo(rec: dict, index: int) -> Example:
    """BytedTsinghua-SIA/DAPO-Math-17k: `prompt` = [{"role": "user", "content": ...}] with the
    "Answer:" instruction, `reward_model` = {"ground_truth": ...}. A plain {"problem", "answer"}
    record is accepted too."""
    if "prompt" in rec:
        prompt = rec["prompt"]
        if isinstance(prompt, list):
            users = [m.get("content") for m in prompt if isinstance(m, dict)
                     and m.get("role") == "user"]
            if not users or not isinstance(users[0], str) or not users[0].strip():
                raise _FieldError("prompt", "no user message with text content")
            prompt = users[0]
        elif not isinstance(prompt, str):
            raise _FieldError("prompt", f"expected a list of messages or text, "
                                        f"got {type(prompt).__name__}")
        problem = strip_dapo_instruction(prompt)
        if not problem:
            raise _FieldError("prompt", "empty once the Answer: instruction is stripped")
        reward = rec.get("reward_model")
        if isinstance(reward, dict):
            answer = _text(reward, "ground_truth")
        elif reward is not None:
            raise _FieldError("reward_model", f"expected an object, got {type(reward).__name__}")
        else:
            answer = _text(rec, "answer")
    else:
        problem, answer = _text(rec, "problem"), _text(rec, "answer")
    extra = rec.get("extra_info") if isinstance(rec.get("extra_info"), dict) else {}
    return Example(id=str(extra.get("index", rec.get("id", index))), problem=problem,
                   answer=answer, source="dapo")


def parse_openthoughts(rec: dict, index: int) -> Optional[Example]:
    """open-thoughts/OpenThoughts-114k, `metadata` config: kept only when `domain` is math (when
    present) and `ground_truth_solution` has exactly one distinct \\boxed{} answer (§2.3)."""
    domain = rec.get("domain")
    if domain is not None and str(domain).strip().lower() != "math":
        return None
    problem = _text(rec, "problem")
    solution = _text(rec, "ground_truth_solution", "solution")
    answers = set(boxed_answers(solution))
    if len(answers) != 1 or not next(iter(answers)):
        return None
    return Example(id=str(rec.get("id", index)), problem=problem, answer=answers.pop(),
                   solution=solution, source="openthoughts")


def parse_eval(rec: dict, index: int) -> Example:
    """MATH-500, AIME 2024/2025 and any local file: `problem` (or `question`), `answer` (or a
    `solution` whose last \\boxed{} is the answer), optional `id`/`unique_id`/`solution`."""
    problem = _text(rec, "problem", "question", "Problem")
    answer = _text(rec, "answer", "Answer", required=False)
    solution = _text(rec, "solution", "Solution", required=False)
    if answer and "\\boxed" in answer:  # math-ai/aime24 stores "\boxed{204}" as the answer
        boxes = boxed_answers(answer)
        answer = boxes[-1] if boxes else answer
    if not answer:
        boxes = boxed_answers(solution)
        if not boxes:
            raise _FieldError("answer", "missing, and no `solution` with a \\boxed{} answer")
        answer = boxes[-1]
    rid = rec.get("unique_id", rec.get("id", rec.get("ID", index)))
    return Example(id=str(rid), problem=problem, answer=answer, solution=solution,
                   source=str(rec.get("source", "")))


# name -> (hub repository, config, split, parser)
DATASETS = {
    "dapo": ("BytedTsinghua-SIA/DAPO-Math-17k", None, "train", parse_dapo),
    "openthoughts": ("open-thoughts/OpenThoughts-114k", "metadata", "train", parse_openthoughts),
    "math500": ("HuggingFaceH4/MATH-500", None, "test", parse_eval),
    "aime24": ("math-ai/aime24", None, "test", parse_eval),
    "aime25": ("math-ai/aime25", None, "test", parse_eval),
}


def parse_records(records: Iterable[tuple], parser, name: str) -> list:
    """Examples from (where, record) pairs; a malformed record raises DataError naming where and
    the field; an empty result raises DataError too."""
    out, seen = [], 0
    for i, (where, rec) in enumerate(records):
        seen += 1
        try:
            ex = parser(rec, i)
        except _FieldError as e:
            raise DataError(f"{where}: field '{e.field}' {e.problem}; fix or remove this record "
                            f"({name} records need the fields documented in "
                            f"data.{parser.__name__})") from None
        if ex is not None:
            ex.source = ex.source or name
            out.append(ex)
    if not out:
        detail = f"all {seen} records were filtered out" if seen else "it has no records"
        raise DataError(f"dataset {name!r} is empty: {detail}")
    return out


def load_examples(name: str, path: Optional[str] = None, limit: Optional[int] = None,
                  **synthetic_kwargs) -> list:
    """The examples of a named dataset (DATASETS, or "synthetic"), or of a local file.

    `name` may itself be a .jsonl/.json/.parquet path (read with `parse_eval`). `path` reads a
    named dataset from a local file in its hub schema instead of the hub. `limit` keeps the first
    records. `synthetic_kwargs` go to `synthetic_examples` (`n` defaults to 500, split 'eval')."""
    if name == "synthetic":
        if path is not None:
            raise ValueError("the synthetic task is generated, not read: drop the path")
        kw = {"n": 500, "split": "eval", **synthetic_kwargs}
        return synthetic_examples(**kw)[:limit]
    if synthetic_kwargs:
        raise ValueError(f"options {sorted(synthetic_kwargs)} only apply to the synthetic task")
    if name in DATASETS:
        repo, config, split, parser = DATASETS[name]
        records = ((f"{path}:{line}", rec) for line, rec in read_records(path)) if path \
            else _hub_records(repo, config, split)
    elif name.endswith((".jsonl", ".json", ".parquet")) or os.path.exists(name):
        parser = parse_eval
        records = ((f"{name}:{line}", rec) for line, rec in read_records(name))
    else:
        raise ValueError(f"unknown dataset {name!r}: use one of {', '.join(DATASETS)}, synthetic, "
                         f"or a path to a .jsonl/.json/.parquet file")
    examples = parse_records(records, parser, name)
    return examples[:limit] if limit is not None else examples


# -----------------------------------------------------------------------------
# A look at the data from the command line

def main() -> None:
    ap = argparse.ArgumentParser(description="Print a few examples of a dataset and the student "
                                             "and teacher contexts built from them.")
    ap.add_argument("--name", default="synthetic",
                    help="dataset: synthetic, dapo, openthoughts, math500, aime24, aime25, or a "
                         ".jsonl/.json/.parquet path")
    ap.add_argument("--path", default=None, help="read the named dataset from this local file")
    ap.add_argument("--n", type=int, default=3, help="how many examples to print")
    ap.add_argument("--pi", default="none", choices=PI_MODES, help="teacher context to show")
    ap.add_argument("--hard-frac", type=float, default=0.0,
                    help="synthetic only: fraction of hard (2-digit product) problems")
    args = ap.parse_args()
    kw = {"n": args.n, "hard_frac": args.hard_frac} if args.name == "synthetic" else {}
    for ex in load_examples(args.name, path=args.path, limit=args.n, **kw):
        print(f"--- {ex.id}  answer={ex.answer!r}")
        for m in context_messages(ex, args.pi):
            print(f"[{m['role']}] {m['content']}")
        if ex.solution:
            print(f"[reference] {ex.solution}")


if __name__ == "__main__":
    main()
