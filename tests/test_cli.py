"""The `compress` command: help on every flag, `check-params` resolving model references and
input paths before any work, the flows' own command lines it calls, and `--fresh` / the spent
budget of a search study (a real Optuna journal)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml

from compress.commands.cli import parser
from compress.core.errors import PipelineError
from compress.search.recipe_search import open_study
from compress.search.studies import budget_spent, fresh_study_name
from flows.entry import parse_settings
from tests.repos import REPO_ROOT

COMPRESS = str(Path(sys.executable).parent / "compress")


def subcommands() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


@pytest.mark.parametrize("name", sorted(subcommands()))
def test_every_flag_of_every_subcommand_has_help(name: str) -> None:
    command = subcommands()[name]
    undocumented = [
        action.dest
        for action in command._actions
        if not isinstance(action, argparse._HelpAction) and not action.help
    ]
    assert undocumented == []


def test_the_front_door_runs_what_a_user_runs() -> None:
    assert {"run", "cycle", "search"} <= set(subcommands())
    shown = subprocess.run([COMPRESS, "--help"], capture_output=True, text=True, check=True)
    assert "installed by pyproject.toml" not in shown.stdout
    assert "compress search [--study NAME] [--trials N] [--fresh]" in shown.stdout


def _params(folder: Path, change: dict[str, dict]) -> Path:
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    for section, values in change.items():
        params[section] |= values
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    return folder / "params.yaml"


def _check(folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [COMPRESS, "check-params"], cwd=folder, capture_output=True, text=True, timeout=120
    )


def test_check_params_names_an_unknown_model_and_a_path_outside_data_input(
    tmp_path: Path,
) -> None:
    _params(
        tmp_path,
        {
            "teacher": {"arch": "resnet19"},
            "distill": {"student": "timm:mobilenetv3_smal_100"},
            "data": {"source": "imagefolder", "path": "/mnt/share/images"},
        },
    )
    result = _check(tmp_path)
    assert result.returncode == 1
    message = result.stderr.strip()
    assert "teacher.arch 'resnet19' names no model. Did you mean resnet18" in message
    assert "Did you mean mobilenetv3_small_100" in message
    assert "data.path '/mnt/share/images' is outside data/input/" in message
    assert "Traceback" not in message and "\n\n" not in message  # one paragraph


def test_check_params_says_where_the_stages_look_and_whether_it_exists(tmp_path: Path) -> None:
    _params(tmp_path, {"data": {"source": "imagefolder", "path": "data/input/flowers"}})
    missing = _check(tmp_path)
    assert missing.returncode == 1
    assert "data.path: the stages will read 'data/input/flowers', which does not exist" in (
        missing.stderr
    )
    (tmp_path / "data/input/flowers").mkdir(parents=True)
    found = _check(tmp_path)
    assert found.returncode == 0, found.stderr
    assert "data.path: the stages read 'data/input/flowers' (it exists)" in found.stdout


def test_run_passes_its_overrides_as_yaml_values_and_refuses_a_bare_key() -> None:
    assert parse_settings(["prune.target_ratio=0.6", "quantize.keep_fp32=[classifier]"]) == {
        "prune.target_ratio": 0.6,
        "quantize.keep_fp32": ["classifier"],
    }
    with pytest.raises(PipelineError, match="is not key=value"):
        parse_settings(["prune.target_ratio"])


def test_a_bad_override_exits_1_before_any_flow_runs(tmp_path: Path) -> None:
    result = subprocess.run(
        [COMPRESS, "run", "--set", "prune.target_ratio", "--repo", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "--set 'prune.target_ratio' is not key=value" in result.stderr


def _finish(study: optuna.Study, trials: int) -> None:
    for _ in range(trials):
        trial = study.ask()
        study.tell(trial, [0.0, 1.0])


def test_fresh_starts_a_new_study_beside_a_finished_one(tmp_path: Path) -> None:
    journal = tmp_path / "study.journal"
    assert fresh_study_name(journal, "t") == "t"  # no journal yet: the name itself
    finished = open_study(journal, "t", seed=0)
    _finish(finished, 2)
    assert "already has 2 finished trials (max_trials 2)" in budget_spent(finished, 2)
    assert "--fresh" in budget_spent(finished, 2)
    assert budget_spent(finished, 3) is None  # a raised budget runs one more
    fresh = fresh_study_name(journal, "t")
    assert fresh == "t-2"
    _finish(open_study(journal, fresh, seed=0), 1)
    assert fresh_study_name(journal, "t") == "t-3"
    assert len(open_study(journal, "t", seed=0).trials) == 2  # the finished study is kept
