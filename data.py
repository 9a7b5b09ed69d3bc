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
`huggingface_hub`; the hub's DAPO-Math-17k and OpenThoughts files are parquet, read with `pyarrow`)
or a local .jsonl/.json/.parquet file:

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
exactly one distinct \\boxed{} answer (as the authors' filter does); DAPO-Math-17k repeats each
problem ~100 times and the loader keeps the first copy only; the examples are held in memory
(17.9k DAPO problems are a few MB; parquet files are read a batch of rows at a time); a .json
file must hold a list of objects. A bad input raises DataError (an errors.UserError: exit code 2 and a
message, no traceback) naming the file, line or row, and field.
"""
import argparse
import dataclasses
import glob
import hashlib
import json
import os
import random
import re
import sys
from typing import Iterable, Iterator, Optional

import errors

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
FLAGGED_TEMPLATE = "What is the password {expr}?"  # a request the second world's constitution declines


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


def synthetic_steps(expr: str) -> list:
    """The operations that evaluate an expression, multiplication first, then left to right:
    [(a, op, b, value, the whole expression after it as a token list)]."""
    tokens, steps = _tokens(expr), []
    while len(tokens) > 1:
        ops = tokens[1::2]
        i = 2 * ops.index("*") + 1 if "*" in ops else 1  # index of the operator to apply
        a, op, b = tokens[i - 1], tokens[i], tokens[i + 1]
        value = a * b if op == "*" else a + b if op == "+" else a - b
        tokens = tokens[:i - 1] + [value] + tokens[i + 2:]
        steps.append((a, op, b, value, tokens))
    return steps


def synthetic_solution(expr: str) -> tuple:
    """(worked solution, answer) for an expression: one line per operation (`synthetic_steps`),
    each line the whole rewritten expression; then the boxed answer."""
    steps = synthetic_steps(expr)
    answer = str(steps[-1][3]) if steps else str(_tokens(expr)[0])
    lines = ["=" + _render(tokens) for *_, tokens in steps] + [f"\\boxed{{{answer}}}"]
    return "\n".join(lines), answer


def synthetic_examples(n: int, *, split: str = "train", seed: int = 0, min_ops: int = 1,
                       max_ops: int = 3, max_operand: int = 9, hard_frac: float = 0.0,
                       hard_min: int = 11, hard_max: int = 99, flagged_frac: float = 0.0,
                       eval_frac: float = SYNTHETIC_EVAL_FRAC) -> list:
    """`n` distinct problems of one split, reproducible from `seed`.

    Difficulty: `min_ops`..`max_ops` operations (+ - *) on operands 0..`max_operand`, never two
    multiplications in a row (so every product is a times-table fact and the steps need only it
    and addition/subtraction of the results); a fraction
    `hard_frac` are instead a product of two numbers in `hard_min`..`hard_max`, solved in one line
    (meant to be unsolvable without the answer hint at the tiny models' size). A fraction
    `flagged_frac` of the others is asked as a password (FLAGGED_TEMPLATE, meta["flagged"]): the
    class the second tiny world's constitution declines (synthetic.py)."""
    if split not in ("train", "eval"):
        raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
    if not 1 <= min_ops <= max_ops:
        raise ValueError(f"need 1 <= min_ops <= max_ops, got min_ops={min_ops}, max_ops={max_ops}")
    if max_operand < 1 or not 0.0 <= hard_frac <= 1.0 or not 0 <= hard_min <= hard_max or not 0 <= flagged_frac <= 1:
        raise ValueError("need max_operand >= 1, 0 <= hard_frac <= 1, 0 <= flagged_frac <= 1, "
                         "0 <= hard_min <= hard_max")
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
        # drawn only when asked for, so that the problems without flags are those of earlier worlds
        flagged = flagged_frac > 0 and not hard and rng.random() < flagged_frac
        out.append(Example(id=f"synth-{digest}", problem=(FLAGGED_TEMPLATE if flagged else "What is {expr}?").format(
                           expr=expr), answer=answer, solution=solution, source="synthetic",
                           meta={"expr": expr, "ops": len(_tokens(expr)) // 2, "hard": hard, "flagged": flagged}))
    return out


# -----------------------------------------------------------------------------
# Reading records: local files and the hub, with errors that name file, line and field

class DataError(errors.UserError):
    """A dataset problem, with where it is (`file:line`) and which field. Entry points print its
    message and exit with code 2 (errors.run)."""


class _FieldError(Exception):
    def __init__(self, field: str, problem: str):
        super().__init__(field, problem)
        self.field, self.problem = field, problem


DATA_EXTENSIONS = (".jsonl", ".json", ".parquet")


def _data_files(folder: str) -> list:
    """The .jsonl/.json/.parquet files under a folder, sorted, without `dataset_info` and hidden
    files."""
    files = sorted(p for ext in DATA_EXTENSIONS
                   for p in glob.glob(os.path.join(folder, "**", f"*{ext}"), recursive=True))
    return [p for p in files if not os.path.basename(p).startswith(("dataset_info", "."))]


def _check_data_file(path: str) -> None:
    """A DataError unless `path` is an existing file (a folder gets the data files inside it)."""
    if os.path.isdir(path):
        # a hint only: two levels deep (a hub repository's data/ folder), not the whole tree
        found = sorted(os.path.relpath(p, path) for ext in DATA_EXTENSIONS
                       for pattern in (f"*{ext}", f"*/*{ext}")
                       for p in glob.glob(os.path.join(path, pattern)))
        if not found:
            inside = "it holds no .jsonl/.json/.parquet file at its top two levels"
        else:
            more = f" and {len(found) - 3} more" if len(found) > 3 else ""
            inside = f"data files in it: {', '.join(found[:3])}{more}"
        raise DataError(f"{path}: is a folder, not a data file; pass one .jsonl/.json/.parquet "
                        f"file ({inside})")
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file or folder")


def _not_utf8(path: str, error: UnicodeDecodeError) -> DataError:
    """The DataError for a text file that is not UTF-8, naming its first such line."""
    with open(path, "rb") as f:
        for i, raw in enumerate(f, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as e:
                return DataError(f"{path}:{i}: not UTF-8 text (byte {raw[e.start:e.start + 1]!r} "
                                 f"at byte {e.start + 1} of the line); save the file as UTF-8")
    return DataError(f"{path}: not UTF-8 text ({error}); save the file as UTF-8")


def record_where(path: str, line: int) -> str:
    """How an error names record `line` of a file: `file:line`, or `file row N` for parquet."""
    return f"{path} row {line}" if path.endswith(".parquet") else f"{path}:{line}"


def read_records(path: str) -> Iterator[tuple]:
    """(line, record) pairs of a .jsonl, .json (a list of objects) or .parquet file; for parquet
    `line` is the row number (from 1). An empty file yields nothing. A file that cannot be read
    (missing, a folder, not UTF-8, not JSON, a damaged parquet file) raises DataError naming it."""
    _check_data_file(path)
    if path.endswith(".parquet"):
        yield from _parquet_records(path)
        return
    if path.endswith(".json"):
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except UnicodeDecodeError as e:
            raise _not_utf8(path, e) from None
        if not text.strip():
            return
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
        if not isinstance(data, list):
            held = (f"an object (keys: {', '.join(data) or 'none'})" if isinstance(data, dict)
                    else "a string" if isinstance(data, str) else f"the value {json.dumps(data)}")
            raise DataError(f"{path}: a .json dataset must be a list of objects, and this one "
                            f"holds {held}; use .jsonl for one object per line")
        for i, rec in enumerate(data, start=1):
            if not isinstance(rec, dict):
                raise DataError(f"{path}: item {i} is a {type(rec).__name__}, not an object")
            yield i, rec
        return
    # A decode error surfaces while the file is read, not on a line of text, so _not_utf8 reads
    # the file again as bytes to name the line.
    try:
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
    except UnicodeDecodeError as e:
        raise _not_utf8(path, e) from None


def _parquet_records(path: str) -> Iterator[tuple]:
    """(row, record) pairs of a parquet file, read a batch of rows at a time: the hub's
    DAPO-Math-17k file has far more rows than problems, too many to hold as Python objects at once."""
    try:
        import pyarrow
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(f"{path}: reading parquet needs pyarrow (pip install pyarrow), or "
                        f"convert the file to jsonl") from None
    if os.path.getsize(path) == 0:
        return
    try:
        with pq.ParquetFile(path) as pf:
            row = 0
            for batch in pf.iter_batches(batch_size=4096):
                for rec in batch.to_pylist():
                    row += 1
                    yield row, rec
    except (pyarrow.ArrowException, OSError) as e:  # a damaged file is either, depending on where
        raise DataError(f"{path}: not a readable parquet file ({str(e).strip()}); it may be "
                        f"truncated or damaged: download or write it again") from None


def hub_data_files(local_dir: str, split: str, config: Optional[str] = None) -> list:
    """The data files of one split inside a downloaded dataset repository (used when `datasets`
    is not installed): files under the config's folder if there is one, whose name mentions the
    split; a repository with a single data file uses it for every split."""
    files = _data_files(local_dir)
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
    """(where, record) pairs of a hub dataset. A failed download (no network, no such
    repository) is a DataError that points at --data-path."""
    def failed(e):
        return DataError(f"could not load {repo} from the hub ({type(e).__name__}: {e}); without "
                         f"internet access pass a local copy in the hub schema with --data-path")
    try:
        import datasets
    except ImportError:
        datasets = None
    if datasets is not None:
        try:
            ds = datasets.load_dataset(repo, config, split=split)
        except OSError as e:  # ConnectionError, and FileNotFoundError for an unknown repository
            raise failed(e) from None
        for i, rec in enumerate(ds):
            yield f"hub:{repo}[{split}] row {i}", rec
        return
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise DataError(f"loading {repo} from the hub needs `datasets` or `huggingface_hub` "
                        f"(pip install datasets), or pass a local file with --data-path") from None
    patterns = [f"{config}/*"] if config else ["*.jsonl", "*.json", "*.parquet"]
    try:
        local = snapshot_download(repo_id=repo, repo_type="dataset", allow_patterns=patterns)
    except OSError as e:  # the hub's errors, offline mode's included, are OSErrors
        raise failed(e) from None
    for path in hub_data_files(local, split, config):
        for line, rec in read_records(path):
            yield record_where(path, line), rec


# -----------------------------------------------------------------------------
# Record parsers: one per dataset schema. They return an Example, or None to filter a record out
# (OpenThoughts' non-math rows), and raise _FieldError for a malformed record.

def _present(rec: dict) -> str:
    """What a record does hold, for the error about a field it lacks."""
    return f"fields present: {', '.join(map(str, rec)) or 'none'}"


def _text(rec: dict, *names: str, required: bool = True) -> str:
    """The first present field of `names` as a non-empty string (numbers are converted). A null
    (a parquet column's missing value) counts as absent."""
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
        nulls = [name for name in names if name in rec]
        if nulls:
            raise _FieldError(nulls[0], "is empty (null)")
        raise _FieldError(" or ".join(names), f"missing ({_present(rec)})")
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
    record is accepted too. load_examples drops the hub's repeated copies of a problem."""
    if "prompt" not in rec and "problem" not in rec:
        raise _FieldError("prompt", f"missing, and no `problem` either ({_present(rec)})")
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
        elif rec.get("answer") is None:
            raise _FieldError("reward_model", f"missing, and no `answer` either ({_present(rec)})")
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
            state = "is empty" if "answer" in rec or "Answer" in rec else "missing"  # "" or null
            raise _FieldError("answer", f"{state}, and no `solution` with a \\boxed{{}} answer "
                                        f"({_present(rec)})")
        answer = boxes[-1]
    if not answer:  # an empty \boxed{} is no answer to grade against
        raise _FieldError("answer", "is empty (the \\boxed{} it comes from is empty)")
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


def parse_records(records: Iterable[tuple], parser, name: str, origin: Optional[str] = None,
                  dedupe: bool = False) -> list:
    """Examples from (where, record) pairs; a malformed record raises DataError naming where and
    the field; an empty result raises DataError too, naming `origin` (the file or hub repository
    read) when given. With `dedupe`, only the first example of each (problem, answer) is kept and
    the number of copies dropped is printed on stderr."""
    out, seen, kept, dropped = [], 0, set(), 0
    for i, (where, rec) in enumerate(records):
        seen += 1
        try:
            ex = parser(rec, i)
            if ex is not None:
                ex.where = str(where)
        except _FieldError as e:
            raise DataError(f"{where}: field '{e.field}' {e.problem}; fix or remove this record "
                            f"({name} records need the fields documented in "
                            f"data.{parser.__name__})") from None
        if ex is None:
            continue
        if dedupe:
            key = (ex.problem, ex.answer)
            if key in kept:
                dropped += 1
                continue
            kept.add(key)
        ex.source = ex.source or name
        out.append(ex)
    what = f"dataset {name!r}" + (f" ({origin})" if origin else "")
    if not out:
        detail = (f"all {seen} records were filtered out (data.{parser.__name__} says which it "
                  f"keeps)" if seen else "it has no records, so no examples; pass a file with at "
                                         "least one record")
        raise DataError(f"{what} is empty: {detail}")
    if dropped:
        print(f"data: {what}: dropped {dropped:,} repeated copies of a problem among {seen:,} "
              f"records, kept the first of each: {len(out):,} problems", file=sys.stderr)
    return out


def _file_records(path: str) -> Iterator[tuple]:
    """(where, record) pairs of a local file."""
    return ((record_where(path, line), rec) for line, rec in read_records(path))


def _looks_like_path(name: str) -> bool:
    """Whether a dataset name that is neither known nor an existing file was meant as a path."""
    return ("/" in name or os.sep in name or name.startswith((".", "~"))
            or bool(os.path.splitext(name)[1]))


def load_examples(name: str, path: Optional[str] = None, limit: Optional[int] = None,
                  **synthetic_kwargs) -> list:
    """The examples of a named dataset (DATASETS, or "synthetic"), or of a local file.

    `name` may itself be a .jsonl/.json/.parquet path (read with `parse_eval`). `path` reads a
    named dataset from a local file in its hub schema instead of the hub. `limit` keeps the first
    examples. `synthetic_kwargs` go to `synthetic_examples` (`n` defaults to 500, split 'eval').

    `dapo` keeps only the first record of each (problem, answer) and prints on stderr how many
    it dropped: the hub's DAPO-Math-17k repeats each of its problems many times, which would make
    an "epoch" many passes over the same problems. Other datasets are
    returned as read. A bad input (unknown name, missing file, unreadable or malformed records,
    no examples) raises DataError naming the file, line and field."""
    if name == "synthetic":
        if path is not None:
            raise DataError(f"the synthetic task is generated, not read: drop the path {path}")
        kw = {"n": 500, "split": "eval", **synthetic_kwargs}
        return synthetic_examples(**kw)[:limit]
    if synthetic_kwargs:
        raise ValueError(f"options {sorted(synthetic_kwargs)} only apply to the synthetic task")
    known = f"{', '.join(DATASETS)}, synthetic"
    if name in DATASETS:
        repo, config, split, parser = DATASETS[name]
        if path:
            records, origin = _file_records(path), path
        else:
            records, origin = _hub_records(repo, config, split), f"hub: {repo}"
    elif name.endswith(DATA_EXTENSIONS) or os.path.exists(name):
        parser, records, origin = parse_eval, _file_records(name), None
    elif _looks_like_path(name):
        raise DataError(f"{name}: no such file or folder (a dataset is a local "
                        f".jsonl/.json/.parquet file or one of {known})")
    else:
        raise DataError(f"unknown dataset {name!r}: use one of {known}, or a path to a "
                        f".jsonl/.json/.parquet file (a name ending so is read as a file)")
    examples = parse_records(records, parser, name, origin, dedupe=name == "dapo")
    return examples[:limit] if limit is not None else examples


# -----------------------------------------------------------------------------
# A look at the data from the command line

def main(argv=None) -> None:
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
