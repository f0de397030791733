"""`dvc repro baseline`: train or load the teacher and measure what compression must beat."""

from compress.artifacts import Artifacts
from compress.params_file import load_params
from compress.runner import run_stage
from compress.steps.baseline import baseline
from compress.training import resolve_compute


def main() -> None:
    params = load_params()
    baseline(
        params.teacher,
        params.data.augment,
        params.benchmark,
        Artifacts.here(),
        resolve_compute(params.compute),
    )


if __name__ == "__main__":
    run_stage(main, data_parallel=True)
