"""Tests that run the documentation's Python examples, so what the docs show stays true.

Every fenced code block marked ``python`` in README.md and docs/**/*.md runs: each file's blocks in
order, in one shared namespace per file, in a fresh temporary working directory (so a file such as
``incsync.db`` lands there). Each file's blocks then run a second time, in a new namespace but in
the same directory, as a reader who runs an example twice would: an example that creates a file (a
SQLite database, a token file) must still work when the file is already there.

A block opts out only with ``<!-- not-run: reason -->`` on the line right before its fence; blocks
in other languages (``sh``, ``jinja``, ``html``, ``sql``…) are never run. A page whose examples
need the PostgreSQL server says so with ``<!-- needs: postgres -->`` on a line of its own: its
examples then get the test server's connection string in ``INCSYNC_DATABASE_URL``, the variable the
docs name everywhere, and without a server the page is skipped (failed under CI), like every test
that needs a service.

No page may show a private module or name (``incsync.connectors._rest_config``, ``from
incsync.views import _dot``): what a reader copies must keep working when the internals move, so
every name a page uses is exported by a public module.
"""

from __future__ import annotations

import ast
import re
import sys
import traceback
import types
from collections.abc import Mapping, Sequence
from pathlib import Path

import attrs
import pytest

from incsync.stores import SQLiteStore
from tests.stores.postgres_server import drop_schema, require_server

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
GUIDES = ("concepts.md", "connectors.md", "status.md")

PYTHON_LANGUAGES = frozenset({"python", "python3", "py"})
_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")
_NOT_RUN = re.compile(r"^\s*<!--\s*not-run\b(?P<rest>.*?)-->\s*$")
# A dotted name under incsync with a part that starts with one "_" (dunders such as __version__
# are public).
_PRIVATE_REFERENCE = re.compile(r"\bincsync(?:\.\w+)*?\._(?!_)\w*")
_NEEDS = re.compile(r"^\s*<!--\s*needs:\s*(?P<services>[\w ,]+?)\s*-->\s*$", re.MULTILINE)
SERVICES = frozenset({"postgres"})
DOCS_SCHEMA = "incsync"  # the schema the pages' PostgreSQL examples use
# The one name of the variable holding the application's PostgreSQL connection string, in the
# pages, the command line's examples and the tests. The tests' own server is another variable
# (INCSYNC_TEST_POSTGRES, README.md), so that no test can reach an application's database.
DATABASE_VARIABLE = "INCSYNC_DATABASE_URL"
_DATABASE_VARIABLES = re.compile(r"\bINCSYNC_\w*(?:POSTGRES|PG|CONNINFO|DATABASE|DB|DSN)\w*")


@attrs.frozen
class CodeBlock:
    """One fenced code block of a Markdown file.

    Args:
        path: The file it is in.
        line: The 1-based line of its first line of code.
        language: The first word of the fence's info string, lower-cased ("" when none).
        source: The code, with the fence's indentation removed.
        not_run: The reason given in a ``<!-- not-run: reason -->`` marker, or ``None``.
    """

    path: Path
    line: int
    language: str
    source: str
    not_run: str | None = None

    @property
    def is_python(self) -> bool:
        """Whether the block is Python (and so runs unless marked not-run)."""
        return self.language in PYTHON_LANGUAGES


def _not_run_reason(line: str, where: str) -> str | None:
    match = _NOT_RUN.match(line)
    if match is None:
        return None
    rest = match.group("rest").strip()
    reason = rest[1:].strip() if rest.startswith(":") else ""
    if not reason:
        raise ValueError(f"{where}: a not-run marker must say why: <!-- not-run: reason -->")
    return reason


def _dedent(line: str, indent: str) -> str:
    return line[len(indent) :] if line.startswith(indent) else line.lstrip(" \t")


def code_blocks(text: str, path: Path) -> list[CodeBlock]:
    """Return the fenced code blocks of a Markdown text, in order.

    Raises:
        ValueError: A fence is never closed, a not-run marker gives no reason, or a not-run
            marker is not on the line right before a ``python`` fence.
    """
    lines = text.splitlines()
    blocks: list[CodeBlock] = []
    pending: tuple[int, str] | None = None  # (line number, reason) of a not-run marker
    index = 0
    while index < len(lines):
        line = lines[index]
        where = f"{path}:{index + 1}"
        opening = _FENCE.match(line)
        if opening is None:
            if pending is not None:
                raise ValueError(f"{path}:{pending[0]}: not-run marker is not before a fence")
            reason = _not_run_reason(line, where)
            if reason is not None:
                pending = (index + 1, reason)
            index += 1
            continue
        indent, fence = opening.group("indent"), opening.group("fence")
        words = opening.group("info").split()
        language = words[0].lower() if words else ""
        closing = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
        end = index + 1
        while end < len(lines) and not closing.match(lines[end]):
            end += 1
        if end == len(lines):
            raise ValueError(f"{where}: the {fence} fence opened here is never closed")
        not_run = None
        if pending is not None:
            if language not in PYTHON_LANGUAGES:
                raise ValueError(
                    f"{path}:{pending[0]}: not-run marker is not before a python fence"
                )
            not_run = pending[1]
            pending = None
        body = "\n".join(_dedent(code, indent) for code in lines[index + 1 : end])
        blocks.append(CodeBlock(path, index + 2, language, body + "\n", not_run))
        index = end + 1
    if pending is not None:
        raise ValueError(f"{path}:{pending[0]}: not-run marker is not before a fence")
    return blocks


def python_blocks(path: Path) -> list[CodeBlock]:
    """Return the Python blocks of a Markdown file, including those marked not-run."""
    return [
        block for block in code_blocks(path.read_text(encoding="utf-8"), path) if block.is_python
    ]


def example_after(path: Path, heading: str, language: str = "python") -> CodeBlock:
    """The first block of ``language`` after the Markdown heading line ``heading`` of ``path``.

    Its not-run marker is dropped: a test that picks a block runs it, giving it what the page
    could not (configured settings, a template on disk).
    """
    text = path.read_text(encoding="utf-8")
    heading_line = text[: text.index(f"\n{heading}\n")].count("\n") + 2
    block = next(
        b for b in code_blocks(text, path) if b.line > heading_line and b.language == language
    )
    return attrs.evolve(block, not_run=None)


def _close_stores(namespace: Mapping[str, object]) -> None:
    # An example that opens a SQLite file need not close it; the test does, so no connection
    # outlives the temporary directory (Python 3.13 warns about unclosed connections).
    for value in list(namespace.values()):
        if isinstance(value, SQLiteStore):
            value.close()


def run_blocks(blocks: Sequence[CodeBlock], module_name: str) -> types.ModuleType:
    """Run the blocks that are not marked not-run, in order, in one fresh module's namespace.

    Each block is compiled under its Markdown file's name, padded so that a traceback names the
    line of the Markdown file. The module is registered in ``sys.modules`` while the blocks run,
    so that classes and dataclasses defined in examples behave as in a real module.
    """
    module = types.ModuleType(module_name)
    previous = sys.modules.get(module_name)
    sys.modules[module_name] = module
    try:
        for block in blocks:
            if block.not_run is not None:
                continue
            code = compile("\n" * (block.line - 1) + block.source, str(block.path), "exec")
            exec(code, module.__dict__)
    finally:
        _close_stores(module.__dict__)
        if previous is None:
            del sys.modules[module_name]
        else:
            sys.modules[module_name] = previous
    return module


def services_needed(text: str) -> set[str]:
    """Return the services a page declares with ``<!-- needs: ... -->``.

    Raises:
        ValueError: A declared service is not one the tests know how to provide.
    """
    needed = {
        name.strip()
        for match in _NEEDS.finditer(text)
        for name in match.group("services").split(",")
    }
    unknown = needed - SERVICES
    if unknown:
        raise ValueError(f"unknown service in a needs marker: {sorted(unknown)}")
    return needed


def _document_id(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _is_private(part: str) -> bool:
    return part.startswith("_") and not (part.startswith("__") and part.endswith("__"))


def private_imports(source: str) -> list[str]:
    """Return what a Python source imports from incsync that is private, as dotted names.

    A module is private when a part of its path starts with ``_``; so is a name imported from a
    module (``from incsync.views import _dot``). Dunders (``__version__``) are public.
    """
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module is not None:
            modules = [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found += [
            name
            for name in modules
            if name.split(".")[0] == "incsync" and any(map(_is_private, name.split(".")))
        ]
    return found


def private_references(text: str) -> list[str]:
    """Return the private incsync names a Markdown text mentions anywhere, code or prose."""
    return [match.group(0) for match in _PRIVATE_REFERENCE.finditer(text)]


def _has_runnable_block(path: Path) -> bool:
    return any(block.not_run is None for block in python_blocks(path))


# The pages show what a reader running them gets: the in-memory connector's one reader.
@pytest.mark.one_reader
@pytest.mark.parametrize(
    "document", [d for d in DOCUMENTS if _has_runnable_block(d)], ids=_document_id
)
def test_python_blocks_of_the_document_run(
    document: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every python block of the document runs, in order, in one namespace, twice in one directory.

    The second run starts from a new namespace but finds what the first left behind: its files,
    and for a PostgreSQL page its schema.
    """
    runnable = [block for block in python_blocks(document) if block.not_run is None]
    needs_postgres = "postgres" in services_needed(document.read_text(encoding="utf-8"))
    if needs_postgres:
        monkeypatch.setenv(DATABASE_VARIABLE, require_server())
        # The pages use the schema a deployment would ("incsync"): each run starts it afresh,
        # so no earlier run (of another version, with another schema) decides this one.
        drop_schema(DOCS_SCHEMA)
    monkeypatch.chdir(tmp_path)
    module_name = "incsync_docs_" + re.sub(r"\W", "_", document.stem)
    try:
        for _ in range(2):
            run_blocks(runnable, module_name)
    finally:
        if needs_postgres:
            drop_schema(DOCS_SCHEMA)


@pytest.mark.parametrize("document", DOCUMENTS, ids=_document_id)
def test_no_page_imports_or_names_a_private_module(document: Path) -> None:
    """No python block (run or not) imports a private module or name; no text names one."""
    imported = [
        f"line {block.line}: {name}"
        for block in python_blocks(document)
        for name in private_imports(block.source)
    ]
    assert imported == [], "import the public name instead"
    assert private_references(document.read_text(encoding="utf-8")) == []


def test_private_imports_and_references_are_found() -> None:
    """Each way of reaching a private module or name is found; public and dunder names are not."""
    source = (
        "import incsync._lazy\n"
        "from incsync.connectors._rest_config import RestConfig\n"
        "from incsync.views import _dot, render_text_table\n"
        "from incsync import __version__, SyncEngine\n"
        "from incsync.connectors import RestConfig\n"
        "import _thread\n"
        "def f():\n"
        "    from incsync.stores import _postgres_sql\n"
    )
    assert private_imports(source) == [
        "incsync._lazy",
        "incsync.connectors._rest_config.RestConfig",
        "incsync.views._dot",
        "incsync.stores._postgres_sql",
    ]
    text = (
        "described in `incsync.connectors._rest_config.RestConfig`; "
        "::: incsync.stores._base\n`incsync.__version__`, `incsync.connectors.RestConfig`"
    )
    assert private_references(text) == [
        "incsync.connectors._rest_config",
        "incsync.stores._base",
    ]


@pytest.mark.parametrize("document", DOCUMENTS, ids=_document_id)
def test_the_database_variable_has_one_name(document: Path) -> None:
    """Every page names the PostgreSQL connection string's variable INCSYNC_DATABASE_URL.

    README.md alone names the tests' server too, for those who run the tests.
    """
    allowed = {DATABASE_VARIABLE}
    if document.name == "README.md":
        allowed.add("INCSYNC_TEST_POSTGRES")
    named = set(_DATABASE_VARIABLES.findall(document.read_text(encoding="utf-8")))
    assert named <= allowed


def test_the_guides_exist_and_have_examples_that_run() -> None:
    """The three guides are where README.md points, each with at least one example that runs."""
    for name in GUIDES:
        path = ROOT / "docs" / name
        assert path in DOCUMENTS, f"docs/{name} is missing"
        assert _has_runnable_block(path), f"docs/{name}"


def test_blocks_are_found_in_order_with_their_markdown_line_and_language() -> None:
    """Fences of any length and indentation are found; the first word after one is its language."""
    text = (
        "# Title\n"
        "```python\n"
        "x = 1\n"
        "```\n"
        "text\n"
        "~~~~ sh extra words\n"
        "make test\n"
        "~~~~\n"
        "1. A list item:\n"
        "\n"
        "   ```python\n"
        "   y = x + 1\n"
        "   ```\n"
    )
    blocks = code_blocks(text, Path("doc.md"))
    assert [(block.line, block.language) for block in blocks] == [
        (3, "python"),
        (7, "sh"),
        (12, "python"),
    ]
    assert blocks[2].source == "y = x + 1\n"
    assert [block.is_python for block in blocks] == [True, False, True]


def test_a_not_run_marker_right_before_a_python_fence_keeps_its_reason() -> None:
    """The marker opts out only the block right after it, and the reason is kept."""
    text = "<!-- not-run: needs Flask -->\n```python\nimport flask\n```\n```python\nz = 3\n```\n"
    first, second = code_blocks(text, Path("doc.md"))
    assert first.not_run == "needs Flask"
    assert second.not_run is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<!-- not-run -->\n```python\nx = 1\n```\n", "must say why"),
        ("<!-- not-run:   -->\n```python\nx = 1\n```\n", "must say why"),
        ("<!-- not-run: slow -->\n\n```python\nx = 1\n```\n", "not before a fence"),
        ("<!-- not-run: slow -->\n```html\n<p>\n```\n", "not before a python fence"),
        ("text\n<!-- not-run: slow -->\n", "not before a fence"),
        ("```python\nx = 1\n", "never closed"),
    ],
)
def test_malformed_markers_and_fences_are_errors(text: str, message: str) -> None:
    """A marker without a reason or away from a python fence, or an unclosed fence, fails loudly."""
    with pytest.raises(ValueError, match=message):
        code_blocks(text, Path("doc.md"))


def test_a_needs_marker_names_known_services_only() -> None:
    """``<!-- needs: postgres -->`` is read; a service the tests cannot provide is an error."""
    assert services_needed("intro\n<!-- needs: postgres -->\n") == {"postgres"}
    assert services_needed("no marker here\n") == set()
    with pytest.raises(ValueError, match="unknown service"):
        services_needed("<!-- needs: postgres, oracle -->\n")


def test_blocks_share_one_namespace_and_skip_the_ones_marked_not_run() -> None:
    """A later block sees what an earlier one defined; a not-run block is not executed."""
    text = (
        "```python\ntotal = 1\n```\n"
        "<!-- not-run: would fail -->\n```python\nraise RuntimeError('ran')\n```\n"
        "```python\ntotal += 1\n```\n"
    )
    module = run_blocks(code_blocks(text, Path("doc.md")), "incsync_docs_selftest")
    assert module.total == 2
    assert "incsync_docs_selftest" not in sys.modules


def test_a_failing_block_is_reported_at_its_markdown_line() -> None:
    """The traceback of a failing example names the Markdown file and the line in it."""
    text = "Intro\n\n```python\nok = True\nraise KeyError('missing')\n```\n"
    with pytest.raises(KeyError) as caught:
        run_blocks(code_blocks(text, Path("guide.md")), "incsync_docs_selftest")
    frame = traceback.extract_tb(caught.value.__traceback__)[-1]
    assert (frame.filename, frame.lineno) == ("guide.md", 5)
