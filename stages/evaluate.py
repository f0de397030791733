"""`dvc repro evaluate`: every candidate in ONNX Runtime, Pareto fronts, the gate, the shipped model."""

from compress.commands.runner import run_stage
from compress.config.evaluate import EvaluateParams
from compress.config.file import load_sections
from compress.core.artifacts import Artifacts
from compress.steps.evaluate import evaluate


def main() -> None:
    (evaluate_params,) = load_sections(EvaluateParams)
    evaluate(evaluate_params, Artifacts.here())


if __name__ == "__main__":
    run_stage(main)
