"""`dvc repro distill`: distil the teacher into a small student, beside a hard-label control."""

from compress.artifacts import Artifacts
from compress.params_file import load_params
from compress.runner import run_stage
from compress.steps.distill import distill
from compress.training import resolve_compute


def main() -> None:
    params = load_params()
    distill(
        params.distill,
        params.data.augment,
        Artifacts.here(),
        resolve_compute(params.compute),
    )


if __name__ == "__main__":
    run_stage(main, data_parallel=True)
