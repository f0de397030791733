"""What a user reads first stays readable: `dvc metrics show` prints the headline summary as one
table, `dvc plots show` renders each plot once (the confusion matrix as one), the summary and the
model card agree with the committed metrics and manifest, and every Markdown table renders.
DVC runs on the committed files in a copy of the repository; nothing is trained."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from compress.config.params import load_params
from compress.core.artifacts import Artifacts
from compress.evaluation.summary import summary
from tests.repos import REPO_ROOT, copy_repo

DVC = str(Path(sys.executable).parent / "dvc")
MARKDOWN = sorted(
    [
        REPO_ROOT / "README.md",
        *(REPO_ROOT / "reports").glob("*.md"),
        *(REPO_ROOT / "docs").rglob("*.md"),
    ]
)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_repo(tmp_path_factory.mktemp("views"))


def dvc(repo: Path, *args: str) -> str:
    return subprocess.run([DVC, *args], cwd=repo, capture_output=True, text=True, check=True).stdout


def test_metrics_show_prints_the_summary_as_one_table(repo: Path) -> None:
    shown = json.loads(dvc(repo, "metrics", "show", "--json"))
    assert list(shown[""]["data"]) == ["metrics/summary.json"]
    table = dvc(repo, "metrics", "show").splitlines()
    assert [line.split()[0] for line in table] == ["Path", "metrics/summary.json"]
    assert len(table[0].split()) - 1 <= 25  # the headline figures, not every per-class interval


def test_each_plot_is_rendered_once(repo: Path) -> None:
    rendered = json.loads(dvc(repo, "plots", "show", "--json"))["data"]
    spec = yaml.safe_load((repo / "dvc.yaml").read_text())
    top_level = {name: plot for entry in spec["plots"] for name, plot in entry.items()}
    stage_plots = {
        next(iter(plot)) if isinstance(plot, dict) else plot
        for stage in spec["stages"].values()
        for plot in stage.get("plots", [])
    }
    in_top_level = {path for plot in top_level.values() for path in plot["y"]}
    assert stage_plots.isdisjoint(in_top_level), "a file plotted by its stage and at top level"
    assert set(rendered) == set(top_level) | stage_plots
    assert all(len(renders) == 1 for renders in rendered.values()), "an empty or doubled chart"
    confusion = [name for name, plot in top_level.items() if plot["template"] == "confusion"]
    assert confusion, "the confusion matrix is drawn with DVC's confusion template"
    transforms = rendered[confusion[0]][0]["content"]["spec"]["transform"]
    assert transforms[0]["aggregate"][0]["op"] == "count"  # cells counted, not a line


def test_summary_is_the_committed_evaluation_s_headline() -> None:
    artifacts = Artifacts(REPO_ROOT)
    evaluation = json.loads(artifacts.evaluate_metrics.read_text())
    max_drop = load_params(artifacts.params_file).evaluate.gate.max_accuracy_drop
    committed = json.loads(artifacts.summary_metrics.read_text())
    assert summary(evaluation, max_drop, artifacts) == committed
    assert committed["shipped"]["candidate"] == evaluation["decision"]["shipped"]


def test_model_card_names_the_shipped_manifest_s_commit() -> None:
    artifacts = Artifacts(REPO_ROOT)
    shipped = json.loads(artifacts.shipped_json.read_text())
    card = artifacts.model_card.read_text()
    assert f"Candidate **{shipped['candidate']}**" in card
    assert f"Code commit `{shipped['git_commit']}`" in card


def cell_count(line: str) -> int:
    """Cells of a Markdown table row; a pipe inside `code` or escaped does not split."""
    line = re.sub(r"`[^`]*`", "code", line.replace("\\|", "x")).strip()
    return len(line.removeprefix("|").removesuffix("|").split("|"))


def table_problems(text: str) -> list[str]:
    """Tables whose separator or rows have another cell count than their header."""
    problems, lines, fenced = [], text.splitlines(), False
    for number, line in enumerate(lines):
        fenced = fenced != line.startswith("```")
        if fenced or number == 0 or not re.match(r"^\|?\s*:?-{3,}", line):
            continue
        header = cell_count(lines[number - 1])
        rows = [line]
        for row in lines[number + 1 :]:
            if not row.strip().startswith("|"):
                break
            rows.append(row)
        problems += [
            f"line {number + 1 + offset}: {cell_count(row)} cells under a {header}-cell header"
            for offset, row in enumerate(rows)
            if cell_count(row) != header
        ]
    return problems


@pytest.mark.parametrize("page", MARKDOWN, ids=lambda path: str(path.relative_to(REPO_ROOT)))
def test_every_markdown_table_renders(page: Path) -> None:
    assert table_problems(page.read_text()) == []


def test_a_table_with_an_extra_separator_cell_is_named() -> None:
    text = "| a | b |\n|---|---|---|\n| 1 | 2 |\n"
    assert table_problems(text) == ["line 2: 3 cells under a 2-cell header"]
