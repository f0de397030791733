"""`dvc repro distill`: distil the teacher into a small student, beside a hard-label control."""

from compress.commands.runner import run_stage
from compress.config.compute import ComputeParams
from compress.config.data import DataParams
from compress.config.distill import DistillParams
from compress.config.file import load_sections
from compress.core.artifacts import Artifacts
from compress.steps.distill import distill
from compress.train.loop import resolve_compute


def main() -> None:
    distill_params, data, compute = load_sections(DistillParams, DataParams, ComputeParams)
    distill(distill_params, data.augment, Artifacts.here(), resolve_compute(compute))


if __name__ == "__main__":
    run_stage(main, data_parallel=True)
