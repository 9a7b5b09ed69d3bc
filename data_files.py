"""Reading datasets: the records of a local file or a hub repository, checked, and turned into the
fields of a problem by one parser per schema, with errors that name the file, line and field.

What this file is
    `read_records` yields the records of a .jsonl file, a .json file holding a list of objects, or
    a .parquet file (read a batch of rows at a time); `hub_records` those of a hub dataset, through
    `datasets` when it is installed, otherwise `huggingface_hub`'s download and `read_records`
    (`hub_data_files` finds a split's files in the download). One parser per schema turns a record
    into the fields of a problem, or None to leave it out: `parse_dapo`, `parse_openthoughts`,
    `parse_eval`. `parse_records` runs a parser over the records, keeps the first copy of each
    problem on request, and stops at the first bad record with its file, line and field.
    data.load_examples chooses the parser and makes the fields `data.Example`s, so this file
    imports nothing of the project but errors.py.

Paper (docs/paper.md)
    §2.3: DAPO-Math-17k (its "Answer:" instruction stripped), OpenThoughts-114k math rows with an
    extractable \\boxed{} answer, MATH-500, AIME 2024 and AIME 2025, each in its hub schema.

Command
    python data.py --name math500 --path m500.jsonl --n 3    # read a local copy, print its contexts

What it simplifies
    * OpenThoughts rows are kept only when their reference solution has exactly one distinct
      \\boxed{} answer (as the authors' filter does).
    * DAPO-Math-17k repeats each problem about 100 times; `parse_records(dedupe=True)` keeps the
      first copy only.
    * The records are held in memory (17.9k DAPO problems are a few MB; parquet files are read a
      batch of rows at a time), and a .json file must hold a list of objects.
    * A bad input raises DataError (an errors.UserError: exit code 2 and a message, no traceback)
      naming the file, line or row, and field. Two problems of one file with the same id are
      refused too: evaluation summaries group samples by id, so they would count as one problem.
    * A JSON number with a fraction or an exponent keeps its text as written (`JSONFloat`), so an
      answer written 1e20 is graded against "1e20", not Python's "1e+20"; NaN and Infinity are
      refused where a field is read as text.
"""

import glob
import json
import math
import os
import re
import sys
from typing import Iterable, Iterator, Optional

import errors

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
    files = sorted(
        p for ext in DATA_EXTENSIONS for p in glob.glob(os.path.join(folder, "**", f"*{ext}"), recursive=True)
    )
    return [p for p in files if not os.path.basename(p).startswith(("dataset_info", "."))]


def _check_data_file(path: str) -> None:
    """A DataError unless `path` is an existing file (a folder gets the data files inside it)."""
    if os.path.isdir(path):
        # a hint only: two levels deep (a hub repository's data/ folder), not the whole tree
        found = sorted(
            os.path.relpath(p, path)
            for ext in DATA_EXTENSIONS
            for pattern in (f"*{ext}", f"*/*{ext}")
            for p in glob.glob(os.path.join(path, pattern))
        )
        if not found:
            inside = "it holds no .jsonl/.json/.parquet file at its top two levels"
        else:
            more = f" and {len(found) - 3} more" if len(found) > 3 else ""
            inside = f"data files in it: {', '.join(found[:3])}{more}"
        raise DataError(
            f"{path}: is a folder, not a data file; pass one .jsonl/.json/.parquet file ({inside})"
        )
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file or folder")


class JSONFloat(float):
    """A JSON number with a fraction or an exponent (or NaN, Infinity) that keeps its text as written.

    An answer field is read as text, and the text of a float is not the file's: 1e20 prints as
    "1e+20" and 0.10 as "0.1", golds that no boxed answer equals. Keeping what the file says is
    sound (it is what a quoted answer would hold) where refusing would reject files that are fine."""

    def __new__(cls, text: str):
        number = super().__new__(cls, text)
        number.text = text
        return number

    def __getnewargs__(self):
        return (self.text,)

    def __repr__(self) -> str:
        return self.text

    __str__ = __repr__


def _loads(text: str):
    """json.loads with every float kept as a JSONFloat (its text as written)."""
    return json.loads(text, parse_float=JSONFloat, parse_constant=JSONFloat)


def _unreadable_json(error: Exception) -> str:
    """Why Python's JSON reader refused a text that is valid JSON: too deep, or too long a number."""
    if isinstance(error, RecursionError):
        return "nested too deeply for Python's JSON reader; flatten the record"
    return (
        f"holds an integer longer than Python reads ({sys.get_int_max_str_digits()} digits); "
        "write it as a JSON string"
    )


def _json_trouble_line(text: str, error: Exception) -> int:
    """The line of a JSON text where `error` (`_unreadable_json`'s) arose: the deepest nesting for
    a RecursionError, else the first integer longer than Python reads (strings skipped)."""
    limit = sys.get_int_max_str_digits() or len(text) + 1
    line, depth, deepest, deepest_line = 1, 0, 0, 1
    in_string = escaped = False
    run, run_line, before = 0, 1, " "  # the current run of digits, its line, the character before it
    for ch in text + " ":
        if in_string:
            escaped, in_string = (False, True) if escaped else (ch == "\\", ch != '"')
        elif ch.isdigit():
            if not run:
                run_line = line
            run += 1
        else:
            # an integer is a run of digits that is neither a fraction's nor an exponent's
            if (
                run > limit
                and before not in ".eE+"
                and ch not in ".eE"
                and not isinstance(error, RecursionError)
            ):
                return run_line
            run, before = 0, ch
            if ch == '"':
                in_string = True
            elif ch in "[{":
                depth += 1
                if depth > deepest:
                    deepest, deepest_line = depth, line
            elif ch in "]}":
                depth -= 1
        if ch == "\n":
            line += 1
    return deepest_line


def _not_utf8(path: str, error: UnicodeDecodeError) -> DataError:
    """The DataError for a text file that is not UTF-8, naming its first such line."""
    with open(path, "rb") as f:
        for i, raw in enumerate(f, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as e:
                return DataError(
                    f"{path}:{i}: not UTF-8 text (byte {raw[e.start : e.start + 1]!r} "
                    f"at byte {e.start + 1} of the line); save the file as UTF-8"
                )
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
            data = _loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
        except (RecursionError, ValueError) as e:  # valid JSON that Python's reader still refuses
            raise DataError(f"{path}:{_json_trouble_line(text, e)}: {_unreadable_json(e)}") from None
        if not isinstance(data, list):
            held = (
                f"an object (keys: {', '.join(data) or 'none'})"
                if isinstance(data, dict)
                else "a string"
                if isinstance(data, str)
                else f"the value {json.dumps(data)}"
            )
            raise DataError(
                f"{path}: a .json dataset must be a list of objects, and this one "
                f"holds {held}; use .jsonl for one object per line"
            )
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
                    rec = _loads(line)
                except json.JSONDecodeError as e:
                    raise DataError(
                        f"{path}:{i}: not valid JSON ({e.msg} at column {e.colno}); "
                        f"each line must hold one JSON object"
                    ) from None
                except (RecursionError, ValueError) as e:  # valid JSON that Python's reader refuses
                    raise DataError(f"{path}:{i}: {_unreadable_json(e)}") from None
                if not isinstance(rec, dict):
                    raise DataError(f"{path}:{i}: a line holds a {type(rec).__name__}, not a JSON object")
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
        raise DataError(
            f"{path}: reading parquet needs pyarrow (pip install pyarrow), or convert the file to jsonl"
        ) from None
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
        raise DataError(
            f"{path}: not a readable parquet file ({str(e).strip()}); it may be "
            f"truncated or damaged: download or write it again"
        ) from None


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
        raise DataError(
            f"{local_dir}: no data file for split {split!r} (config {config!r}) among "
            f"{[rel[p] for p in files] or 'no jsonl/json/parquet files'}"
        )
    return chosen


def hub_records(repo: str, config: Optional[str], split: str) -> Iterator[tuple]:
    """(where, record) pairs of a hub dataset. A failed download (no network, no such
    repository) is a DataError that points at --data-path."""

    def failed(e):
        return DataError(
            f"could not load {repo} from the hub ({type(e).__name__}: {e}); without "
            f"internet access pass a local copy in the hub schema with --data-path"
        )

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
        raise DataError(
            f"loading {repo} from the hub needs `datasets` or `huggingface_hub` "
            f"(pip install datasets), or pass a local file with --data-path"
        ) from None
    patterns = [f"{config}/*"] if config else ["*.jsonl", "*.json", "*.parquet"]
    try:
        local = snapshot_download(repo_id=repo, repo_type="dataset", allow_patterns=patterns)
    except OSError as e:  # the hub's errors, offline mode's included, are OSErrors
        raise failed(e) from None
    for path in hub_data_files(local, split, config):
        for line, rec in read_records(path):
            yield record_where(path, line), rec


# -----------------------------------------------------------------------------
# Record parsers: one per dataset schema. They return the fields of a problem (a dict of
# data.Example's fields), or None to filter a record out (OpenThoughts' non-math rows), and raise
# _FieldError for a malformed record.

# DAPO-Math-17k ships every problem wrapped in an "Answer:"-style instruction (§2.3); the paper
# strips it and uses data.BOXED_INSTRUCTION instead.
DAPO_PREFIX = (
    "Solve the following math problem step by step. The last line of your response "
    "should be of the form Answer: $Answer (without quotes) where $Answer is the answer "
    "to the problem."
)
DAPO_SUFFIX = 'Remember to put your answer on its own line after "Answer:".'


def strip_dapo_instruction(text: str) -> str:
    """The bare problem inside a DAPO-Math-17k prompt: the "Answer:" prefix and suffix removed.

    Text without the wrapper is returned stripped but otherwise unchanged."""
    s = text.strip()
    if s.startswith(DAPO_PREFIX):
        s = s[len(DAPO_PREFIX) :]
    if s.endswith(DAPO_SUFFIX):
        s = s[: -len(DAPO_SUFFIX)]
    return s.strip()


def _present(rec: dict) -> str:
    """What a record does hold, for the error about a field it lacks."""
    return f"fields present: {', '.join(map(str, rec)) or 'none'}"


def _text(rec: dict, *names: str, required: bool = True) -> str:
    """The first present field of `names` as a non-empty string. A null (a parquet column's missing
    value) counts as absent. Numbers are converted: an integer as its digits, a JSON float as
    written in the file (JSONFloat), a float from parquet or the hub as Python prints it; NaN and
    Infinity are refused, since no answer equals them (in parquet, NaN usually marks a missing value)."""
    for name in names:
        if name in rec and rec[name] is not None:
            v = rec[name]
            if isinstance(v, bool) or not isinstance(v, (str, int, float)):
                raise _FieldError(name, f"expected text, got {type(v).__name__}")
            if isinstance(v, float) and not math.isfinite(v):
                raise _FieldError(
                    name,
                    f'is {v}, which no answer equals (a missing value?); write it as text ("{name}": "...")',
                )
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


def _id(index: int, rec: dict, *names: str) -> str:
    """A record's id: its first field of `names` that is not null, as text, else its index."""
    return next((str(rec[n]) for n in names if rec.get(n) is not None), str(index))


def boxed_answers(text: str) -> list:
    """The contents of every \\boxed{...} in a reference solution, in order (nested braces ok)."""
    out = []
    for m in re.finditer(r"\\boxed\s*\{", text):
        depth, j = 1, m.end()
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        if depth == 0:
            out.append(text[m.end() : j - 1].strip())
    return out


def parse_dapo(rec: dict, index: int) -> dict:
    """BytedTsinghua-SIA/DAPO-Math-17k: `prompt` = [{"role": "user", "content": ...}] with the
    "Answer:" instruction, `reward_model` = {"ground_truth": ...}. A plain {"problem", "answer"}
    record is accepted too. load_examples drops the hub's repeated copies of a problem."""
    if "prompt" not in rec and "problem" not in rec:
        raise _FieldError("prompt", f"missing, and no `problem` either ({_present(rec)})")
    if "prompt" in rec:
        prompt = rec["prompt"]
        if isinstance(prompt, list):
            users = [m.get("content") for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
            if not users or not isinstance(users[0], str) or not users[0].strip():
                raise _FieldError("prompt", "no user message with text content")
            prompt = users[0]
        elif not isinstance(prompt, str):
            raise _FieldError("prompt", f"expected a list of messages or text, got {type(prompt).__name__}")
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
    return dict(
        id=_id(index, {"index": extra.get("index"), "id": rec.get("id")}, "index", "id"),
        problem=problem,
        answer=answer,
        source="dapo",
    )


def parse_openthoughts(rec: dict, index: int) -> Optional[dict]:
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
    return dict(
        id=_id(index, rec, "id"),
        problem=problem,
        answer=answers.pop(),
        solution=solution,
        source="openthoughts",
    )


def parse_eval(rec: dict, index: int) -> dict:
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
            raise _FieldError(
                "answer", f"{state}, and no `solution` with a \\boxed{{}} answer ({_present(rec)})"
            )
        answer = boxes[-1]
    if not answer:  # an empty \boxed{} is no answer to grade against
        raise _FieldError("answer", "is empty (the \\boxed{} it comes from is empty)")
    return dict(
        id=_id(index, rec, "unique_id", "id", "ID"),
        problem=problem,
        answer=answer,
        solution=solution,
        source=str(rec.get("source", "")),
    )


def parse_records(
    records: Iterable[tuple], parser, name: str, origin: Optional[str] = None, dedupe: bool = False
) -> list:
    """The problems' fields (dicts, data.Example's fields with `where` and `source` set) from
    (where, record) pairs; a malformed record raises DataError naming where and the field; an
    empty result raises DataError too, naming `origin` (the file or hub repository read) when
    given. With `dedupe`, only the first problem of each (problem, answer) is kept and the number
    of copies dropped is printed on stderr. Two kept problems with the same id raise DataError
    naming both records: evaluation summaries group samples by id."""
    out, seen, kept, dropped, ids = [], 0, set(), 0, {}
    for i, (where, rec) in enumerate(records):
        seen += 1
        try:
            ex = parser(rec, i)
            if ex is not None:
                ex["where"] = str(where)
        except _FieldError as e:
            raise DataError(
                f"{where}: field '{e.field}' {e.problem}; fix or remove this record "
                f"({name} records need the fields documented in "
                f"data_files.{parser.__name__})"
            ) from None
        if ex is None:
            continue
        if dedupe:
            key = (ex["problem"], ex["answer"])
            if key in kept:
                dropped += 1
                continue
            kept.add(key)
        if ex["id"] in ids:
            raise DataError(
                f"{ex['where']}: id {ex['id']!r} is also the id of {ids[ex['id']]}; give each problem "
                "its own id (evaluation summaries group samples by id, so the two would count as one)"
            )
        ids[ex["id"]] = ex["where"]
        ex["source"] = ex["source"] or name
        out.append(ex)
    what = f"dataset {name!r}" + (f" ({origin})" if origin else "")
    if not out:
        detail = (
            f"all {seen} records were filtered out (data_files.{parser.__name__} says which it keeps)"
            if seen
            else "it has no records, so no examples; pass a file with at least one record"
        )
        raise DataError(f"{what} is empty: {detail}")
    if dropped:
        print(
            f"data: {what}: dropped {dropped:,} repeated copies of a problem among {seen:,} "
            f"records, kept the first of each: {len(out):,} problems",
            file=sys.stderr,
        )
    return out


def file_records(path: str) -> Iterator[tuple]:
    """(where, record) pairs of a local file."""
    return ((record_where(path, line), rec) for line, rec in read_records(path))


def looks_like_path(name: str) -> bool:
    """Whether a dataset name that is neither known nor an existing file was meant as a path."""
    return "/" in name or os.sep in name or name.startswith((".", "~")) or bool(os.path.splitext(name)[1])
