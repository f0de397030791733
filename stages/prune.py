"""`dvc repro prune`: iterative structured pruning of the student with KD fine-tuning."""

from compress.commands.runner import run_stage
from compress.config.benchmark import BenchmarkParams
from compress.config.compute import ComputeParams
from compress.config.data import DataParams
from compress.config.distill import DistillParams
from compress.config.file import load_sections
from compress.config.prune import PruneParams
from compress.core.artifacts import Artifacts
from compress.steps.prune import prune
from compress.train.loop import resolve_compute


def main() -> None:
    prune_params, distill, data, benchmark, compute = load_sections(
        PruneParams, DistillParams, DataParams, BenchmarkParams, ComputeParams
    )
    prune(
        prune_params, distill, data.augment, benchmark, Artifacts.here(), resolve_compute(compute)
    )


if __name__ == "__main__":
    run_stage(main, data_parallel=True)
