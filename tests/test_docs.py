"""The pages stay true: the MkDocs site builds with --strict (a broken link or anchor fails), every
shell block of the README and docs/ either runs in a fresh clone or is marked illustrative or
covered by a named test, and the README's results table is the one the committed metrics give.

Markers sit on the line right before a block's fence:
    <!-- illustrative: why it is not run here -->
    <!-- covered-by: tests/test_file.py::test_name -->
    <!-- test-command -->  (the README's CI command, which .ci/run runs)
Run with -s to see which blocks are marked, and why."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from compress.evaluation.summary_table import REWRITE_COMMAND, results_table, with_results_table

REPO_ROOT = Path(__file__).resolve().parents[1]
README = REPO_ROOT / "README.md"
PAGES = [README, *sorted((REPO_ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 250
SHELL_LANGUAGES = {"bash", "sh", "console"}
FENCE = re.compile(r"^(\s*)```\s*([\w-]*)")
MARKER = re.compile(r"^\s*<!--\s*(illustrative|covered-by|test-command)\s*:?\s*(.*?)\s*-->\s*$")
# Too slow or needing what a clone lacks: such a block must carry a marker, and is never run here.
HEAVY = re.compile(
    r"dvc (repro|exp run|pull|push|update|import-url)|pip install|pytest|flows\.|"
    r"prefect (server|deployment|worker|flow-run|deploy|work-pool|--no-prompt)|mkdocs serve|"
    r"compress (approve|rollback|search|cycle|run)"
)
BLOCK_TIMEOUT_S = 120


@dataclass(frozen=True)
class Block:
    """A fenced shell block, where it is, and the marker on the line before its fence."""

    page: Path
    line: int  # the opening fence's line, 1-based
    language: str
    code: str
    marker: str | None
    reason: str

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(REPO_ROOT)}:{self.line}"

    def script(self) -> str:
        """The commands; a console block's are its `$ ` lines (the rest is output)."""
        lines = self.code.splitlines()
        if self.language == "console":
            lines = [line[2:] for line in lines if line.startswith("$ ")]
        return "\n".join(lines)


def shell_blocks(page: Path) -> list[Block]:
    """Every fenced bash / sh / console block of a Markdown page."""
    lines = page.read_text().splitlines()
    blocks, index = [], 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        end = next(i for i in range(index + 1, len(lines)) if lines[i].strip().startswith("```"))
        if opening.group(2) in SHELL_LANGUAGES:
            marker = MARKER.match(lines[index - 1]) if index else None
            indent = len(opening.group(1))
            blocks.append(
                Block(
                    page=page,
                    line=index + 1,
                    language=opening.group(2),
                    code="\n".join(line[indent:] for line in lines[index + 1 : end]),
                    marker=marker.group(1) if marker else None,
                    reason=marker.group(2) if marker else "",
                )
            )
        index = end + 1
    return blocks


ALL_BLOCKS = [block for page in PAGES for block in shell_blocks(page)]
RUNNABLE = [block for block in ALL_BLOCKS if block.marker is None]


def _test_exists(reference: str) -> bool:
    """Whether `tests/file.py::test_name` names a test function defined in that file."""
    file, _, name = reference.partition("::")
    path = REPO_ROOT / file
    if not name or not path.is_file():
        return False
    tree = ast.parse(path.read_text())
    return any(
        isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name
        for node in ast.walk(tree)
    )


def test_mkdocs_builds_strict(tmp_path: Path) -> None:
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env=os.environ | {"NO_MKDOCS_2_WARNING": "1"},
        timeout=120,
    )
    assert built.returncode == 0, f"mkdocs build --strict failed:\n{built.stderr[-3000:]}"


def test_every_shell_block_is_runnable_or_marked() -> None:
    """Marked blocks name a reason or an existing test; unmarked ones are cheap to run."""
    problems, marked = [], []
    for block in ALL_BLOCKS:
        if block.marker == "covered-by" and not _test_exists(block.reason):
            problems.append(f"{block.where}: covered-by names no test: '{block.reason}'")
        elif block.marker == "illustrative" and not block.reason:
            problems.append(f"{block.where}: illustrative without a reason")
        elif block.marker is None and HEAVY.search(block.code):
            problems.append(
                f"{block.where}: runs '{HEAVY.search(block.code).group(0)}', too heavy for the "
                "docs test: mark it <!-- illustrative: why --> or <!-- covered-by: test -->"
            )
        if block.marker:
            reason = block.reason or "CI's test command: .ci/run runs it"
            marked.append(f"  {block.where} [{block.marker}] {reason}")
    print(f"\n{len(RUNNABLE)} shell blocks run by this test:")
    print("\n".join(f"  {b.where}: {b.script().splitlines()[0]}" for b in RUNNABLE))
    print(f"{len(marked)} shell blocks not run here:\n" + "\n".join(marked))
    assert not problems, "\n".join(problems)


def test_ci_reads_the_readme_test_command() -> None:
    """.ci/run takes the second line after the marker: the one command of its block."""
    (block,) = [b for b in ALL_BLOCKS if b.marker == "test-command"]
    lines = README.read_text().splitlines()
    assert block.page == README and block.code.count("\n") == 0
    assert lines[block.line] == block.code, "the command must sit right inside the fence"


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    """A fresh clone of the repository's committed state, as a newcomer has it."""
    target = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(REPO_ROOT), str(target)], check=True)
    return target


@pytest.mark.parametrize("block", RUNNABLE, ids=[block.where for block in RUNNABLE])
def test_runnable_block_succeeds_in_a_fresh_clone(block: Block, clone: Path) -> None:
    if HEAVY.search(block.code):
        pytest.fail(f"{block.where} is heavy and unmarked (see the marking test)")
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    ran = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", block.script()],
        cwd=clone,
        capture_output=True,
        text=True,
        env=os.environ | {"PATH": path, "DVC_NO_ANALYTICS": "1"},
        timeout=BLOCK_TIMEOUT_S,
    )
    assert ran.returncode == 0, (
        f"{block.where}: the block exits {ran.returncode} in a fresh clone; fix it or mark it "
        f"<!-- illustrative: why --> / <!-- covered-by: tests/file.py::test -->.\n"
        f"--- stdout\n{ran.stdout[-2000:]}\n--- stderr\n{ran.stderr[-2000:]}"
    )


def _slug(heading: str) -> str:
    """A heading's anchor as GitHub and MkDocs' toc make it (for the headings used here)."""
    text = re.sub(r"[^\w\s-]", "", heading.strip().lower())
    return re.sub(r"\s", "-", text)


def _anchors(page: Path) -> set[str]:
    lines = page.read_text().splitlines()
    return {_slug(line.lstrip("#")) for line in lines if re.match(r"#{1,6} ", line)}


def test_readme_links_and_anchors_resolve() -> None:
    """The README is not part of the MkDocs build: its relative links are checked here."""
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", README.read_text()):
        if re.match(r"[a-z]+://", target):
            continue
        file, _, anchor = target.partition("#")
        page = REPO_ROOT / file if file else README
        if not page.exists() or (anchor and anchor not in _anchors(page)):
            broken.append(target)
    assert not broken, f"README.md links to what does not exist: {broken}"


def test_readme_is_short() -> None:
    count = len(README.read_text().splitlines())
    assert count <= README_MAX_LINES, (
        f"README.md has {count} lines (at most {README_MAX_LINES}): move detail to docs/"
    )


def test_readme_results_table_is_the_committed_metrics() -> None:
    text = README.read_text()
    expected = with_results_table(text, results_table(REPO_ROOT / "metrics"))
    assert text == expected, (
        f"README.md's results table differs from metrics/*.json: run `{REWRITE_COMMAND}` "
        "and commit README.md."
    )


def _keys(section: dict, prefix: str = "") -> set[str]:
    """Every key of a params section, nested ones dotted."""
    keys = set()
    for key, value in section.items():
        keys.add(prefix + key)
        if isinstance(value, dict):
            keys |= _keys(value, f"{prefix}{key}.")
    return keys


def test_readme_image_folder_block_is_a_complete_data_section() -> None:
    """Day 2's `data:` block holds every key of params.yaml's section, no more, so a newcomer can
    paste it whole."""
    blocks = re.findall(r"```yaml\n(data:\n.*?)```", README.read_text(), flags=re.DOTALL)
    assert len(blocks) == 1, "README.md needs one ```yaml block starting with data:"
    shown = yaml.safe_load(blocks[0])["data"]
    committed = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())["data"]
    assert _keys(shown) == _keys(committed), (
        f"README.md's data: block differs from params.yaml's keys: missing "
        f"{sorted(_keys(committed) - _keys(shown))}, extra {sorted(_keys(shown) - _keys(committed))}"
    )
