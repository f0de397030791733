"""`dvc repro teacher_outputs`: the frozen teacher's outputs on every train image's views, once."""

from compress.commands.runner import run_stage
from compress.config.compute import ComputeParams
from compress.config.data import DataParams
from compress.config.distill import DistillParams
from compress.config.file import load_sections
from compress.core.artifacts import Artifacts
from compress.steps.teacher_outputs import teacher_outputs
from compress.train.loop import resolve_compute


def main() -> None:
    distill, data, compute = load_sections(DistillParams, DataParams, ComputeParams)
    teacher_outputs(distill, data.augment, Artifacts.here(), resolve_compute(compute))


if __name__ == "__main__":
    run_stage(main)
