"""The repository stands alone: every paper section the code cites is a heading of docs/paper.md,
every link in the Markdown pages points to a file that exists, every `make` target they name is in
the Makefile, every `module.name` the pages, docstrings and comments cite exists, nothing
points to a folder outside the repository, and every `python ...` command they show names a file,
module and flags that exist (the README says once to activate .venv first).

    python -m pytest -q tests/test_docs.py
"""

import ast
import io
import pathlib
import re
import tokenize

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PY = sorted(p for p in ROOT.rglob("*.py") if ".venv" not in p.parts and "runs" not in p.parts)
MD = [
    ROOT / "README.md",
    ROOT / "RESULTS.md",
    ROOT / "RESULTS_tiny1.md",
    *sorted((ROOT / "docs").glob("*.md")),
]
SECTION = re.compile(r"§(\d+(?:\.\d+)?[a-z]?)")


def paper_headings() -> set:
    """The section numbers docs/paper.md has headings for: `## §3.4 ...` gives "3.4"."""
    text = (ROOT / "docs" / "paper.md").read_text()
    return {m.group(1) for m in re.finditer(r"^#+ §(\d+(?:\.\d+)?[a-z]?)\s", text, re.M)}


def test_every_cited_section_is_a_heading_of_the_paper_page():
    headings = paper_headings()
    assert {"2.4", "3.1b", "3.9", "4", "5", "8"} <= headings  # the parser reads the page
    cited = {}
    for path in PY:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            for sec in SECTION.findall(line):
                cited.setdefault(sec, f"{path.relative_to(ROOT)}:{n}")
    assert len(cited) > 15
    missing = {sec: where for sec, where in cited.items() if sec not in headings}
    assert not missing, f"sections cited in the code with no heading in docs/paper.md: {missing}"


def prose(page) -> str:
    """A Markdown page without its fenced code blocks."""
    return re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M)


def test_markdown_links_point_to_files_that_exist():
    for page in MD:
        for target in re.findall(r"\]\(([^)#\s]+)", prose(page)):
            if target.startswith(("http://", "https://")):
                continue
            assert (page.parent / target).exists(), f"{page.name} links to {target}, which does not exist"


def test_make_targets_named_in_the_docs_exist():
    targets = set(re.findall(r"^([a-z][a-z-]*):", (ROOT / "Makefile").read_text(), re.M))
    for page in MD:
        for name in re.findall(r"`make ([a-z][a-z-]*)", page.read_text()):
            assert name in targets, f"{page.name} names `make {name}`, which the Makefile does not have"


# the team's notes outside the repository, by the names they go by (split so this file does not match itself)
OUTSIDE = [r"\.\./" + "shared", "shared" + " folder", "PAPER" + r"\.md", "DESIGN" + r"\.md"]


@pytest.mark.parametrize("pattern", OUTSIDE)
def test_nothing_points_outside_the_repository(pattern):
    for path in [*PY, *MD, ROOT / "Makefile"]:
        hits = [n for n, line in enumerate(path.read_text().splitlines(), 1) if re.search(pattern, line)]
        assert not hits, (
            f"{path.relative_to(ROOT)} lines {hits} point to {pattern!r}, which users do not have"
        )


# -----------------------------------------------------------------------------
# Every `module.name` a page, docstring or comment cites exists


def project_modules() -> dict:
    """Dotted name -> file of every module a reader can import from the project root or run:
    `losses`, `tiny_world.task`, `experiments.report`; bench/ and examples/ scripts by their own
    name (`bench_step`)."""
    mods = {}
    for path in PY:
        rel = path.relative_to(ROOT)
        if rel.parts[0] == "tests" or rel.name.startswith("test_") or rel.name == "conftest.py":
            continue
        parts = list(rel.with_suffix("").parts)
        if parts[0] in ("bench", "examples"):
            parts = parts[1:]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


def defined_names(path) -> dict:
    """Top-level name -> the names its class body defines, `self.x` included (empty otherwise)."""
    names = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names[node.name] = set()
        elif isinstance(node, ast.ClassDef):
            inner = set()
            for n in ast.walk(node):
                if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    inner.add(n.name)
                elif isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name):
                    inner.add(n.target.id)
                elif isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
                    inner.add(n.id)
                elif isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Store):
                    inner.add(n.attr)
            names[node.name] = inner
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update({n.id: set() for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)})
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update({(a.asname or a.name).split(".")[0]: set() for a in node.names})
    return names


def prose_of(path) -> list:
    """(line number, text) of every comment and docstring of a Python file."""
    src = path.read_text()
    out = [
        (t.start[0], t.string)
        for t in tokenize.generate_tokens(io.StringIO(src).readline)
        if t.type == tokenize.COMMENT
    ]
    for node in ast.walk(ast.parse(src)):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.body:
            first = node.body[0]
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                out += [(first.lineno + i, line) for i, line in enumerate(first.value.value.splitlines())]
    return out


def test_every_cited_module_name_exists():
    mods = project_modules()
    assert {"losses", "rollout", "tiny_world.task", "experiments.report", "bench_step"} <= set(mods)
    defs = {m: defined_names(p) for m, p in mods.items()}
    alternatives = "|".join(sorted(map(re.escape, mods), key=len, reverse=True))
    ref = re.compile(rf"(?<![\w./-])({alternatives})\.([A-Za-z_]\w*)(?:\.([A-Za-z_]\w*))?")
    texts = [(f"{p.name}:{n}", line) for p in MD for n, line in enumerate(p.read_text().splitlines(), 1)]
    texts += [(f"{p.relative_to(ROOT)}:{n}", line) for p in PY for n, line in prose_of(p)]
    cited, missing = 0, []
    for where, line in texts:
        for mod, name, attr in ref.findall(line):
            if name in ("py", "md", "json", "jsonl", "txt", "sh", "png") or f"{mod}.{name}" in mods:
                continue  # a file name, or a submodule of a package
            cited += 1
            if name not in defs[mod]:
                missing.append(f"{where}: {mod}.{name}")
            elif attr and defs[mod][name] and attr not in defs[mod][name]:
                missing.append(f"{where}: {mod}.{name}.{attr}")
    assert cited > 200  # the pattern reads the pages
    assert not missing, "names cited in docs, docstrings or comments that do not exist:\n" + "\n".join(
        missing
    )


def project_imports(path, mods: dict) -> set:
    """The project files a module imports (`import x`, `from x import y`, `from tiny_world import task`)."""
    files = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            if name in mods and mods[name] != path:
                files.add(mods[name].relative_to(ROOT).as_posix())
    return files - {"tiny_world/__init__.py", "experiments/__init__.py"}


def test_design_table_names_each_files_imports():
    """docs/design.md's file table: the third column lists exactly the project files each file
    (or each file of a package row) imports; a lazy import is written after a semicolon."""
    mods = project_modules()
    rows = re.findall(
        r"^\| (`[^|]+) \| [^\n]* \| ([^|\n]*) \|$", (ROOT / "docs" / "design.md").read_text(), re.M
    )
    assert len(rows) > 15
    for files, imports in rows:
        named = set(re.findall(r"`([\w/]+\.py)`", imports.replace("nothing", "")))
        paths = [ROOT / f for f in re.findall(r"`([\w/]+(?:\.py|/))`", files)]
        paths = [q for p in paths for q in (sorted(p.glob("*.py")) if p.is_dir() else [p])]
        actual = set().union(*(project_imports(p, mods) for p in paths))
        actual -= {p.relative_to(ROOT).as_posix() for p in paths}  # a package's own modules
        assert named == actual, (
            f"docs/design.md, row {files}: names {sorted(named)}, imports {sorted(actual)}"
        )


# -----------------------------------------------------------------------------
# Every command the pages and docstrings show runs as written after `make install`

# `python[3] ...`, `.venv/bin/python ...`, `pytest ...`, `torchrun ...`: the module after -m or the
# first .py file, then the rest of the command
COMMAND = re.compile(
    r"(?<![\w/.-])(?:\.venv/bin/)?(?:python3?|pytest|torchrun)\b[^`|#\n]*?\s"
    r"(?:-m\s+([\w.]+)|([\w./-]+\.py)\b)([^`|#\n]*)"
)
PLACEHOLDERS = {"script.py"}  # "`python script.py`" as a figure of speech, not a command


def shown_commands() -> list:
    """(where, module, file, rest of the line) of every command in the pages, docstrings and comments."""
    texts = [(f"{p.name}:{n}", line) for p in MD for n, line in enumerate(p.read_text().splitlines(), 1)]
    texts += [(f"{p.relative_to(ROOT)}:{n}", line) for p in PY for n, line in prose_of(p)]
    return [(where, *m) for where, line in texts for m in COMMAND.findall(line)]


def test_commands_in_the_docs_name_files_modules_and_flags_that_exist():
    import importlib.util

    mods, source = project_modules(), "\n".join(p.read_text() for p in PY)
    commands = shown_commands()
    assert len(commands) > 100  # the pattern reads the pages
    wrong = []
    for where, module, path, rest in commands:
        if module and module not in mods and importlib.util.find_spec(module.split(".")[0]) is None:
            wrong.append(f"{where}: no module {module}")
        if path and path not in PLACEHOLDERS and not (ROOT / path).is_file():
            wrong.append(f"{where}: no file {path} (paths are from the repository root)")
        for flag in re.findall(r"(?<!\S)(--[a-z][\w-]*)", rest):
            if f'"{flag}"' not in source and f"'{flag}'" not in source:
                wrong.append(f"{where}: {flag} is no flag of any script")
    assert not wrong, "commands that would not run as written:\n" + "\n".join(wrong)


def test_readme_activates_the_venv_before_its_first_python_command():
    lines = (ROOT / "README.md").read_text().splitlines()
    first = next(n for n, line in enumerate(lines) if re.match(r"(python|pytest)\b", line))
    activate = next(n for n, line in enumerate(lines) if line.startswith("source .venv/bin/activate"))
    install = next(n for n, line in enumerate(lines) if line.startswith("make install"))
    assert install < activate < first


def test_readme_says_what_make_install_does_without_a_gpu():
    """The CPU index and torch version the README names are the Makefile's, and the pinned version
    is inside requirements.txt's range (so the second pip call keeps it)."""
    makefile, readme = (ROOT / "Makefile").read_text(), (ROOT / "README.md").read_text()
    version = re.search(r"^TORCH_VERSION\s*\?=\s*(\S+)", makefile, re.M).group(1)
    index = re.search(r"^TORCH_CPU_INDEX\s*\?=\s*(\S+)", makefile, re.M).group(1)
    assert f"torch {version}" in readme and index.split("://")[1] in readme
    assert "--index-url $(TORCH_CPU_INDEX)" in makefile and "timeout=" in makefile
    low = re.search(r"^torch>=([\d.]+)", (ROOT / "requirements.txt").read_text(), re.M).group(1)
    as_tuple = lambda v: tuple(int(x) for x in v.split("."))  # noqa: E731
    assert as_tuple(low) <= as_tuple(version)


def test_readme_quickstart_tables_are_the_committed_runs():
    """The README's make opd tables are experiments.quickstart's rendering of the runs kept in
    results/quickstart/ (make readme-opd writes both), never numbers typed by hand."""
    from experiments import quickstart

    readme = (ROOT / "README.md").read_text()
    start, end = readme.index(quickstart.QUICKSTART[0]), readme.index(quickstart.QUICKSTART[1])
    block = readme[start + len(quickstart.QUICKSTART[0]) + 1 : end]
    assert block == quickstart.body(str(ROOT / quickstart.RESULTS_DIR))
    for world in quickstart.WORLDS:
        kept = (ROOT / quickstart.RESULTS_DIR / f"{world}.json").read_text()
        assert f'"preset": "{quickstart.PRESETS[world]}"' in kept
