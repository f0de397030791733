from __future__ import annotations

from pathlib import Path

import pytest

from stages.config import DataParams, TeacherParams, load
from stages.errors import PipelineError

REPO_PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


def test_repository_params_are_valid() -> None:
    assert load("data", DataParams, REPO_PARAMS).source == "digits"
    assert load("teacher", TeacherParams, REPO_PARAMS).arch == "resnet18"


def test_unknown_key_suggests_the_nearest(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("teacher:\n  epoch: 3\n")
    with pytest.raises(
        PipelineError, match=r"unknown key `teacher.epoch`. Did you mean `teacher.epochs`\?"
    ):
        load("teacher", TeacherParams, params)


def test_out_of_range_value_names_key_and_value(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("data:\n  val_fraction: 0.9\n")
    with pytest.raises(
        PipelineError, match=r"`data.val_fraction` = 0.9: Input should be less than 0.5"
    ):
        load("data", DataParams, params)


def test_local_source_needs_a_path(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("data:\n  source: imagefolder\n")
    with pytest.raises(PipelineError, match="data.path is required"):
        load("data", DataParams, params)
