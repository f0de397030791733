"""`dvc repro quantize`: INT8 PTQ + QAT of the pruned student, exported as a real INT8 ONNX."""

from compress.artifacts import Artifacts
from compress.params_file import load_params
from compress.runner import run_stage
from compress.steps.quantize import quantize
from compress.training import resolve_compute


def main() -> None:
    params = load_params()
    quantize(
        params.quantize,
        params.distill,
        params.data.augment,
        params.benchmark,
        Artifacts.here(),
        resolve_compute(params.compute),
    )


if __name__ == "__main__":
    run_stage(main, data_parallel=True)
