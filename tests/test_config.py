from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import get_args

import pytest
import yaml

from compress.compression.pruning import IMPORTANCES
from compress.config.distill import DistillParams, Divergence, TemperatureSchedule
from compress.config.evaluate import EvaluateParams
from compress.config.file import SECTION_NAMES, load_sections
from compress.config.params import SECTIONS, Params, load_params
from compress.config.prune import Importance
from compress.core.errors import PipelineError
from compress.evaluation.decision import OBJECTIVES
from compress.train.losses import DIVERGENCES, TEMPERATURE_SCHEDULES

REPO = Path(__file__).resolve().parents[1]
REPO_PARAMS = REPO / "params.yaml"


def _params_file(tmp_path: Path, text: str) -> Path:
    params = tmp_path / "params.yaml"
    params.write_text(text)
    return params


def test_repository_params_are_valid() -> None:
    params = load_params(REPO_PARAMS)
    assert params.data.source == "digits"
    assert params.teacher.arch == "resnet18"


def test_schema_defaults_are_the_repository_params() -> None:
    assert Params().model_dump() == yaml.safe_load(REPO_PARAMS.read_text())


def test_choices_equal_the_registries_that_implement_them() -> None:
    assert get_args(TemperatureSchedule) == tuple(TEMPERATURE_SCHEDULES)
    assert get_args(Divergence) == tuple(DIVERGENCES)
    assert get_args(Importance) == tuple(IMPORTANCES)
    objective = EvaluateParams.model_fields["objective"].annotation
    assert get_args(objective) == tuple(OBJECTIVES)


def test_checking_params_imports_no_heavy_library() -> None:
    code = (
        "import compress.config.file, sys; print(sorted(m for m in "
        "('torch','torchvision','torch_pruning','prefect','nncf') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_unknown_key_suggests_the_nearest(tmp_path: Path) -> None:
    params = _params_file(tmp_path, "teacher:\n  epoch: 3\n")
    with pytest.raises(
        PipelineError, match=r"unknown key `teacher.epoch`. Did you mean `teacher.epochs`\?"
    ):
        load_params(params)


def test_out_of_range_value_names_key_and_value(tmp_path: Path) -> None:
    params = _params_file(tmp_path, "data:\n  val_fraction: 0.9\n")
    with pytest.raises(
        PipelineError, match=r"`data.val_fraction` = 0.9: Input should be less than 0.5"
    ):
        load_params(params)


def test_local_source_needs_a_path(tmp_path: Path) -> None:
    params = _params_file(tmp_path, "data:\n  source: imagefolder\n")
    with pytest.raises(PipelineError, match="data.path is required"):
        load_params(params)


def test_bad_cron_schedule_names_the_key(tmp_path: Path) -> None:
    params = _params_file(tmp_path, 'registry:\n  schedule: "0 3 * * 9x"\n')
    with pytest.raises(PipelineError, match=r"registry\.schedule '0 3 \* \* 9x'.*not a valid cron"):
        load_params(params)


def test_bad_time_zone_names_the_key(tmp_path: Path) -> None:
    params = _params_file(tmp_path, "registry:\n  timezone: Mars/Base\n")
    with pytest.raises(
        PipelineError, match=r"registry\.schedule .*registry\.timezone 'Mars/Base'.*not a valid"
    ):
        load_params(params)


def test_the_section_names_are_the_whole_schema() -> None:
    assert SECTION_NAMES == tuple(SECTIONS)


def test_a_stage_checks_the_sections_it_reads_and_no_other(tmp_path: Path) -> None:
    """A broken section a stage does not read stops the flows (the whole file) but not the
    stage, whose DVC deps hold only its own sections' schemas."""
    params = _params_file(tmp_path, "search:\n  max_trials: 0\ndistill:\n  alpha: 0.3\n")
    (distill,) = load_sections(DistillParams, path=params)
    assert distill.alpha == 0.3
    with pytest.raises(PipelineError, match=r"`search.max_trials` = 0"):
        load_params(params)
    typo = _params_file(tmp_path, "distil:\n  alpha: 0.3\n")
    with pytest.raises(PipelineError, match=r"unknown section `distil`. Did you mean `distill`\?"):
        load_sections(DistillParams, path=typo)


def test_no_stage_depends_on_the_schemas_only_flows_read() -> None:
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    flow_only = {
        "compress/config/search.py",
        "compress/config/params.py",
        "compress/config/registry.py",
        "compress/config/drift.py",
    }
    assert {name: flow_only & set(spec["deps"]) for name, spec in stages.items()} == {
        name: set() for name in stages
    }
