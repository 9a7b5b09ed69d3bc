"""Tests of data_files.py, through data.load_examples: the readers on small local files in every hub
schema (jsonl, json and parquet), the hub path without `datasets` (huggingface_hub's download
stood in by a local folder in its layout), the records checked and each schema's parser (DAPO's
instruction stripped and its repeated problems dropped, OpenThoughts' rows with one boxed answer),
and every bad input a DataError naming the file and the culprit, exit code 2 and no traceback. The
reference is each file's records written out by hand here, with the fields expected from them.

    .venv/bin/python -m pytest -q tests/test_data_files.py
"""

import json
import os
import sys

import pytest

import data
import data_files
import errors

DAPO_PROMPT = (
    "Solve the following math problem step by step. The last line of your response "
    "should be of the form Answer: $Answer (without quotes) where $Answer is the answer "
    "to the problem.\n\nFind the number of positive divisors of $12$.\n\n"
    'Remember to put your answer on its own line after "Answer:".'
)


def write_jsonl(path, records, raw_lines=()):
    with open(path, "w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
        for line in raw_lines:
            f.write(line + "\n")
    return str(path)


def dapo_record(i, problem="Find the number of positive divisors of $12$.", answer="6"):
    content = DAPO_PROMPT.replace("Find the number of positive divisors of $12$.", problem)
    return {
        "data_source": "math_dapo",
        "prompt": [{"content": content, "role": "user"}],
        "ability": "MATH",
        "reward_model": {"ground_truth": answer, "style": "rule-lean"},
        "extra_info": {"index": f"idx-{i}"},
    }


# -----------------------------------------------------------------------------
# DAPO-Math's "Answer:" instruction stripped (§2.3)


def test_strip_dapo_instruction():
    assert data_files.strip_dapo_instruction(DAPO_PROMPT) == "Find the number of positive divisors of $12$."
    assert data_files.strip_dapo_instruction("  a bare problem \n") == "a bare problem"
    stripped = data_files.strip_dapo_instruction(DAPO_PROMPT)
    assert "Answer:" not in stripped and "step by step" not in stripped


# -----------------------------------------------------------------------------
# Loaders on local files


def test_load_dapo_local_file(tmp_path):
    path = write_jsonl(tmp_path / "dapo.jsonl", [dapo_record(0), dapo_record(1, "What is $2^5$?", "32")])
    ex = data.load_examples("dapo", path=path)
    assert [e.problem for e in ex] == ["Find the number of positive divisors of $12$.", "What is $2^5$?"]
    assert [e.answer for e in ex] == ["6", "32"] and ex[0].id == "idx-0"
    assert ex[1].prompt == data.student_prompt("What is $2^5$?")
    assert "Answer:" not in ex[0].prompt and ex[0].source == "dapo"


def test_load_openthoughts_filters_math_rows_with_one_boxed_answer(tmp_path):
    rows = [
        {"problem": "p1", "ground_truth_solution": "so $\\boxed{\\frac{1}{2}}$", "domain": "math"},
        {"problem": "p2", "ground_truth_solution": "\\boxed{3}", "domain": "biology"},  # not math
        {"problem": "p3", "ground_truth_solution": "no box at all", "domain": "math"},  # no answer
        {"problem": "p4", "ground_truth_solution": "\\boxed{1} or \\boxed{2}", "domain": "math"},
        {"problem": "p5", "ground_truth_solution": "\\boxed{7} ... \\boxed{7}", "domain": "math"},
    ]
    ex = data.load_examples("openthoughts", path=write_jsonl(tmp_path / "ot.jsonl", rows))
    assert [(e.problem, e.answer) for e in ex] == [("p1", "\\frac{1}{2}"), ("p5", "7")]
    assert ex[0].solution == "so $\\boxed{\\frac{1}{2}}$"  # the `full` PI


def test_load_eval_schemas(tmp_path):
    math500 = write_jsonl(
        tmp_path / "m.jsonl",
        [
            {
                "problem": "Compute $1+1$.",
                "solution": "It is $\\boxed{2}$.",
                "answer": "2",
                "subject": "Algebra",
                "level": 1,
                "unique_id": "test/algebra/1.json",
            }
        ],
    )
    aime24 = write_jsonl(
        tmp_path / "a24.jsonl",
        [{"id": 60, "problem": "Aya walks...", "solution": "\\boxed{204}", "url": "u"}],
    )
    aime25 = write_jsonl(tmp_path / "a25.jsonl", [{"problem": "Find x.", "answer": 70, "id": "0"}])
    (e1,), (e2,), (e3,) = (
        data.load_examples("math500", path=math500),
        data.load_examples("aime24", path=aime24),
        data.load_examples("aime25", path=aime25),
    )
    assert (e1.answer, e1.id) == ("2", "test/algebra/1.json")
    assert (e2.answer, e2.id) == ("204", "60")
    assert (e3.answer, e3.id) == ("70", "0")


def test_load_plain_file_by_path_and_json_list(tmp_path):
    p = write_jsonl(
        tmp_path / "mine.jsonl", [{"problem": "a", "answer": "1"}, {"question": "b", "answer": "2"}]
    )
    assert [e.answer for e in data.load_examples(p)] == ["1", "2"]
    j = tmp_path / "mine.json"
    j.write_text(json.dumps([{"problem": "a", "answer": "1"}]))
    assert data.load_examples(str(j))[0].problem == "a"
    assert len(data.load_examples(p, limit=1)) == 1


@pytest.mark.parametrize(
    "records,raw,pattern",
    [
        ([{"problem": "a", "answer": "1"}], ["{not json"], r"bad\.jsonl:2: not valid JSON"),
        (
            [{"problem": "a", "answer": "1"}, {"answer": "2"}],
            [],
            r"bad\.jsonl:2: field 'problem or question or Problem' missing",
        ),
        ([{"problem": "a", "answer": "1"}, {"problem": "b"}], [], r"bad\.jsonl:2: field 'answer' missing"),
        ([{"problem": ["a"], "answer": "1"}], [], r"bad\.jsonl:1: field 'problem' expected text, got list"),
        ([{"problem": "  ", "answer": "1"}], [], r"bad\.jsonl:1: field 'problem' is empty"),
        ([], ["[1, 2]"], r"bad\.jsonl:1: a line holds a list"),
    ],
)
def test_malformed_records_name_file_line_and_field(tmp_path, records, raw, pattern):
    path = write_jsonl(tmp_path / "bad.jsonl", records, raw)
    with pytest.raises(data_files.DataError, match=pattern):
        data.load_examples(path)


def test_malformed_dapo_record_names_the_field(tmp_path):
    bad = dapo_record(1)
    del bad["reward_model"]["ground_truth"]
    path = write_jsonl(tmp_path / "d.jsonl", [dapo_record(0), bad])
    with pytest.raises(data_files.DataError, match=r"d\.jsonl:2: field 'ground_truth' missing"):
        data.load_examples("dapo", path=path)
    bad = dapo_record(0)
    bad["prompt"] = [{"role": "system", "content": "x"}]
    path = write_jsonl(tmp_path / "e.jsonl", [bad])
    with pytest.raises(data_files.DataError, match=r"e\.jsonl:1: field 'prompt' no user message"):
        data.load_examples("dapo", path=path)


def test_empty_datasets_are_errors(tmp_path):
    empty = write_jsonl(tmp_path / "empty.jsonl", [], ["", "  "])
    with pytest.raises(data_files.DataError, match="is empty: it has no records"):
        data.load_examples(empty)
    nomath = write_jsonl(
        tmp_path / "ot.jsonl", [{"problem": "p", "ground_truth_solution": "x", "domain": "code"}]
    )
    with pytest.raises(data_files.DataError, match="all 1 records were filtered out"):
        data.load_examples("openthoughts", path=nomath)
    with pytest.raises(data_files.DataError, match="no such file"):
        data.load_examples("math500", path=str(tmp_path / "missing.jsonl"))
    with pytest.raises(ValueError, match="unknown dataset"):
        data.load_examples("gsm8k")


def test_parquet_needs_pyarrow_or_reads(tmp_path):
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        path = tmp_path / "x.parquet"
        path.write_bytes(b"PAR1")
        with pytest.raises(data_files.DataError, match="pyarrow"):
            data.load_examples(str(path))
        return
    path = str(tmp_path / "x.parquet")
    pq.write_table(pa.Table.from_pylist([{"problem": "a", "answer": "1"}]), path)
    assert data.load_examples(path)[0].answer == "1"


# The hub's schemas, as parquet: DAPO-Math-17k's and OpenThoughts' hub files are parquet, read
# with pyarrow (a requirement) when `datasets` is not installed.
HUB_ROWS = {
    "dapo": (
        [
            dict(dapo_record(0), extra_info={"index": "9a9b-0"}),
            dict(dapo_record(1, "What is $2^5$?", "32"), extra_info={"index": "9a9b-1"}),
        ],
        [("Find the number of positive divisors of $12$.", "6"), ("What is $2^5$?", "32")],
    ),
    "openthoughts": (
        [
            {
                "problem": "Find $x$ if $2x=1$.",
                "deepseek_reasoning": "...",
                "deepseek_solution": "x = 1/2",
                "ground_truth_solution": "So $\\boxed{\\frac{1}{2}}$.",
                "domain": "math",
                "source": "olympiads",
                "test_cases": None,
                "starter_code": None,
            },
            {
                "problem": "Write a sort.",
                "deepseek_reasoning": "...",
                "deepseek_solution": "...",
                "ground_truth_solution": None,
                "domain": "code",
                "source": "apps",
                "test_cases": "{}",
                "starter_code": "",
            },
        ],
        [("Find $x$ if $2x=1$.", "\\frac{1}{2}")],
    ),
    "math500": (
        [
            {
                "problem": "Compute $1+1$.",
                "solution": "It is $\\boxed{2}$.",
                "answer": "2",
                "subject": "Algebra",
                "level": 1,
                "unique_id": "test/algebra/1.json",
            }
        ],
        [("Compute $1+1$.", "2")],
    ),
    "aime24": (
        [{"id": 60, "problem": "Aya walks...", "solution": "\\boxed{204}", "url": "u"}],
        [("Aya walks...", "204")],
    ),
    "aime25": ([{"problem": "Find x.", "answer": "70", "id": "0"}], [("Find x.", "70")]),
}


def write_parquet(path, rows):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), str(path))
    return str(path)


@pytest.mark.parametrize("name", sorted(HUB_ROWS))
def test_hub_schemas_read_from_parquet(tmp_path, name):
    rows, expected = HUB_ROWS[name]
    path = write_parquet(tmp_path / f"{name}.parquet", rows)
    ex = data.load_examples(name, path=path)
    assert [(e.problem, e.answer) for e in ex] == expected
    if name == "dapo":
        assert [e.id for e in ex] == ["9a9b-0", "9a9b-1"] and ex[0].source == "dapo"
        assert "Answer:" not in ex[0].prompt


def test_hub_parquet_without_datasets(tmp_path, monkeypatch):
    # the hub path of an install without `datasets`: huggingface_hub downloads the repository
    # (here a stand-in folder in its layout) and pyarrow reads its parquet file
    huggingface_hub = pytest.importorskip("huggingface_hub")
    repo = tmp_path / "snapshot"
    (repo / "data").mkdir(parents=True)
    write_parquet(repo / "data" / "dapo-math-17k.parquet", HUB_ROWS["dapo"][0])
    calls = []

    def fake_download(**kw):
        calls.append(kw)
        return str(repo)

    monkeypatch.setitem(sys.modules, "datasets", None)  # `import datasets` fails
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    ex = data.load_examples("dapo")
    assert [(e.problem, e.answer) for e in ex] == HUB_ROWS["dapo"][1]
    assert (
        calls[0]["repo_id"] == "BytedTsinghua-SIA/DAPO-Math-17k" and "*.parquet" in calls[0]["allow_patterns"]
    )

    def offline(**kw):
        raise huggingface_hub.errors.LocalEntryNotFoundError("outgoing traffic has been disabled")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(
        data_files.DataError,
        match=r"could not load BytedTsinghua-SIA/DAPO-Math-17k from "
        r"the hub .*--data-path",
    ):
        data.load_examples("dapo")


def test_dapo_drops_repeated_problems(tmp_path, capsys):
    # the hub's DAPO-Math-17k holds ~100 copies of each problem, each with its own index
    problems = [
        ("Find the number of positive divisors of $12$.", "6"),
        ("What is $2^5$?", "32"),
        ("What is $3^2$?", "9"),
    ]
    rows = [
        dict(dapo_record(0, p, a), extra_info={"index": f"copy{c}-{k}"})
        for c in range(4)
        for k, (p, a) in enumerate(problems)
    ]
    rows.append(dict(dapo_record(0, "What is $3^2$?", "3"), extra_info={"index": "other-answer"}))
    for path in (write_parquet(tmp_path / "dapo.parquet", rows), write_jsonl(tmp_path / "dapo.jsonl", rows)):
        ex = data.load_examples("dapo", path=path)
        assert [(e.problem, e.answer) for e in ex] == problems + [("What is $3^2$?", "3")]
        assert [e.id for e in ex] == ["copy0-0", "copy0-1", "copy0-2", "other-answer"]  # the first copy
        err = capsys.readouterr().err
        assert "dropped 9 repeated copies" in err and "13 records" in err and "4 problems" in err
        assert len(data.load_examples("dapo", path=path, limit=2)) == 2  # limit counts distinct problems
        capsys.readouterr()
    # other datasets are returned as read, repeats and all, and say nothing
    same = write_jsonl(tmp_path / "same.jsonl", [{"problem": "a", "answer": "1"}] * 3)
    assert len(data.load_examples("math500", path=same)) == 3 and len(data.load_examples(same)) == 3
    assert capsys.readouterr().err == ""


def write_bad_inputs(d):
    """The files of BAD_INPUTS, in folder d."""
    good = [{"problem": "a", "answer": "1"}, {"problem": "b", "answer": "2"}]

    def raw(name, payload):
        (d / name).write_bytes(payload)

    # 600 good lines first, so the bad byte lies beyond the first block the reader decodes
    lines = b"".join(json.dumps(good[i % 2]).encode() + b"\n" for i in range(600))
    raw("latin1.jsonl", lines + b'{"problem": "caf\xe9", "answer": "1"}\n')
    raw("latin1.json", b'[{"problem": "a", "answer": "1"},\n {"problem": "caf\xe9", "answer": "1"}]')
    (d / "folder").mkdir()
    (d / "hubcopy" / "data").mkdir(parents=True)
    raw("hubcopy/data/dapo-math-17k.parquet", b"")
    raw("empty.jsonl", b"")
    raw("blank.jsonl", b"\n  \n")
    raw("empty.json", b"")
    raw("emptylist.json", b"[]")
    raw("empty.parquet", b"")
    blob = open(write_parquet(d / "full.parquet", good), "rb").read()
    raw("truncated.parquet", blob[: len(blob) // 2])
    raw("garbage.parquet", b"PAR1" + b"\x00" * 64 + b"PAR1")
    raw("notparquet.parquet", b'{"problem": "a", "answer": "1"}\n')
    write_parquet(d / "nocolumn.parquet", [{"question_text": "a", "answer": "1"}])
    write_parquet(d / "noanswer.parquet", [{"problem": "a", "hint": "1"}])
    write_parquet(d / "dapo_cols.parquet", [{"question": "q", "ground_truth": "1"}])
    write_parquet(d / "dapo_noreward.parquet", [{"prompt": [{"role": "user", "content": "q"}]}])
    write_jsonl(d / "nocolumn.jsonl", [{"question_text": "a", "answer": "1"}])
    raw("object.json", json.dumps({"data": good}).encode())
    raw("scalar.json", b"3")
    write_jsonl(d / "emptyanswer.jsonl", [good[0], {"problem": "b", "answer": "  "}])
    write_jsonl(d / "nullanswer.jsonl", [{"problem": "b", "answer": None}])
    write_jsonl(d / "emptybox.jsonl", [{"problem": "b", "solution": "so \\boxed{}"}])
    write_parquet(d / "nullanswer.parquet", [good[0], {"problem": "b", "answer": None}])
    write_jsonl(d / "dapo_emptytruth.jsonl", [dapo_record(0, answer="")])


# case: (dataset name, path, what the message must say besides the file); "@" is the folder
# write_bad_inputs wrote to
BAD_INPUTS = {
    "non-UTF-8 jsonl": ("@latin1.jsonl", None, ["latin1.jsonl:601", "not UTF-8", "save the file as UTF-8"]),
    "non-UTF-8 json": ("@latin1.json", None, ["latin1.json:2", "not UTF-8"]),
    "folder as the dataset": ("@folder", None, ["is a folder", "no .jsonl/.json/.parquet"]),
    "folder as the path": ("dapo", "@hubcopy", ["is a folder", "data/dapo-math-17k.parquet"]),
    "missing file": ("@missing.jsonl", None, ["no such file or folder"]),
    "missing file as the path": ("dapo", "@missing.parquet", ["no such file or folder"]),
    "missing folder": ("@nosuchdir", None, ["no such file or folder"]),
    "missing relative folder": ("runs/nosuchdir", None, ["runs/nosuchdir: no such file or folder"]),
    "hub repository name": ("openai/gsm8k", None, ["openai/gsm8k: no such file or folder", "math500"]),
    "empty jsonl": ("@empty.jsonl", None, ["is empty", "no records"]),
    "blank jsonl as the path": ("dapo", "@blank.jsonl", ["'dapo'", "is empty", "no records"]),
    "empty json": ("@empty.json", None, ["is empty", "no records"]),
    "empty json list": ("@emptylist.json", None, ["is empty", "no records"]),
    "empty parquet": ("math500", "@empty.parquet", ["is empty", "no records"]),
    "truncated parquet": ("@truncated.parquet", None, ["not a readable parquet file", "write it again"]),
    "garbage parquet": ("@garbage.parquet", None, ["not a readable parquet file"]),
    "jsonl named .parquet": ("@notparquet.parquet", None, ["not a readable parquet file"]),
    "parquet without the problem column": (
        "@nocolumn.parquet",
        None,
        [
            "nocolumn.parquet row 1",
            "'problem or question or Problem' missing",
            "fields present: question_text, answer",
        ],
    ),
    "parquet without the answer column": (
        "@noanswer.parquet",
        None,
        ["noanswer.parquet row 1", "'answer' missing", "fields present: problem, hint"],
    ),
    "dapo parquet in another schema": (
        "dapo",
        "@dapo_cols.parquet",
        ["row 1", "'prompt' missing", "fields present: question, ground_truth", "data_files.parse_dapo"],
    ),
    "dapo parquet without reward_model": (
        "dapo",
        "@dapo_noreward.parquet",
        ["row 1", "'reward_model' missing", "fields present: prompt"],
    ),
    "jsonl without the problem field": (
        "@nocolumn.jsonl",
        None,
        [
            "nocolumn.jsonl:1",
            "'problem or question or Problem' missing",
            "fields present: question_text, answer",
        ],
    ),
    "json object, not a list": ("@object.json", None, ["must be a list", "holds an object (keys: data)"]),
    "json number, not a list": ("@scalar.json", None, ["must be a list", "holds the value 3"]),
    "empty answer": ("@emptyanswer.jsonl", None, ["emptyanswer.jsonl:2", "'answer' is empty"]),
    "null answer": ("@nullanswer.jsonl", None, ["nullanswer.jsonl:1", "'answer' is empty"]),
    "empty boxed answer": ("@emptybox.jsonl", None, ["emptybox.jsonl:1", "'answer' is empty"]),
    "null answer in parquet": (
        "@nullanswer.parquet",
        None,
        ["nullanswer.parquet row 2", "'answer' is empty"],
    ),
    "empty dapo ground truth": (
        "dapo",
        "@dapo_emptytruth.jsonl",
        ["dapo_emptytruth.jsonl:1", "'ground_truth' is empty"],
    ),
    "unknown dataset name": (
        "gsm8k",
        None,
        [
            "unknown dataset 'gsm8k'",
            "dapo, openthoughts, math500, aime24, aime25, synthetic",
            ".jsonl/.json/.parquet",
        ],
    ),
    "synthetic with a path": ("synthetic", "@x.jsonl", ["generated, not read"]),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_inputs_name_the_file_and_the_culprit(tmp_path, case):
    pytest.importorskip("pyarrow")
    write_bad_inputs(tmp_path)
    name, path, culprits = (
        x.replace("@", f"{tmp_path}{os.sep}") if isinstance(x, str) else x for x in BAD_INPUTS[case]
    )
    with pytest.raises(data_files.DataError) as info:
        data.load_examples(name, path=path)
    msg = str(info.value)
    assert os.path.basename(path or name) in msg  # the file, or the name that is not one
    for culprit in culprits:
        assert culprit in msg, culprit
    assert isinstance(info.value, errors.UserError) and "\n" not in msg


def test_data_errors_exit_with_code_2_and_no_traceback(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        errors.run(data.main, ["--name", str(tmp_path / "missing.jsonl")])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "error: " in err and "missing.jsonl: no such file or folder" in err and "Traceback" not in err


def test_hub_data_files_picks_the_split_and_config(tmp_path):
    def touch(rel):
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("{}\n")

    touch("test.jsonl")
    touch("train.jsonl")
    assert [os.path.basename(p) for p in data_files.hub_data_files(str(tmp_path), "test")] == ["test.jsonl"]
    other = tmp_path / "ot"
    for rel in (
        "metadata/train-00000-of-00002.parquet",
        "metadata/train-00001-of-00002.parquet",
        "data/train-00000-of-00001.parquet",
    ):
        p = other / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("")
    files = data_files.hub_data_files(str(other), "train", "metadata")
    assert [os.path.relpath(p, other) for p in files] == [
        "metadata/train-00000-of-00002.parquet",
        "metadata/train-00001-of-00002.parquet",
    ]
    single = tmp_path / "dapo"
    (single / "data").mkdir(parents=True)
    (single / "data" / "dapo-math-17k.parquet").write_text("")
    assert len(data_files.hub_data_files(str(single), "train")) == 1
    with pytest.raises(data_files.DataError, match="no data file for split 'validation'"):
        data_files.hub_data_files(str(tmp_path), "validation")
