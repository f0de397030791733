"""`dvc repro evaluate`: every candidate in ONNX Runtime, Pareto fronts, the gate, the shipped model."""

from compress.artifacts import Artifacts
from compress.params_file import load_params
from compress.runner import run_stage
from compress.steps.evaluate import evaluate


def main() -> None:
    evaluate(load_params().evaluate, Artifacts.here())


if __name__ == "__main__":
    run_stage(main)
