"""`dvc repro prune`: iterative structured pruning of the student with KD fine-tuning."""

from compress.artifacts import Artifacts
from compress.params_file import load_params
from compress.runner import run_stage
from compress.steps.prune import prune
from compress.training import resolve_compute


def main() -> None:
    params = load_params()
    prune(
        params.prune,
        params.distill,
        params.data.augment,
        params.benchmark,
        Artifacts.here(),
        resolve_compute(params.compute),
    )


if __name__ == "__main__":
    run_stage(main, data_parallel=True)
