"""`dvc repro baseline`: train or load the teacher and measure what compression must beat."""

from compress.commands.runner import run_stage
from compress.config.benchmark import BenchmarkParams
from compress.config.compute import ComputeParams
from compress.config.data import DataParams
from compress.config.file import load_sections
from compress.config.teacher import TeacherParams
from compress.core.artifacts import Artifacts
from compress.steps.baseline import baseline
from compress.train.loop import resolve_compute


def main() -> None:
    teacher, data, benchmark, compute = load_sections(
        TeacherParams, DataParams, BenchmarkParams, ComputeParams
    )
    baseline(teacher, data.augment, benchmark, Artifacts.here(), resolve_compute(compute))


if __name__ == "__main__":
    run_stage(main, data_parallel=True)
