"""`dvc repro validate_teacher`: the quality gate a teacher must pass before distillation."""

from compress.artifacts import Artifacts
from compress.params_file import load_params
from compress.runner import run_stage
from compress.steps.validate_teacher import validate_teacher


def main() -> None:
    validate_teacher(load_params().gate, Artifacts.here())


if __name__ == "__main__":
    run_stage(main)
