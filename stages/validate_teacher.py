"""`dvc repro validate_teacher`: the quality gate a teacher must pass before distillation."""

from compress.commands.runner import run_stage
from compress.config.file import load_sections
from compress.config.gate import GateParams
from compress.core.artifacts import Artifacts
from compress.steps.validate_teacher import validate_teacher


def main() -> None:
    (gate,) = load_sections(GateParams)
    validate_teacher(gate, Artifacts.here())


if __name__ == "__main__":
    run_stage(main)
