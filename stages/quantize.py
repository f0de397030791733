"""`dvc repro quantize`: INT8 PTQ + QAT of the pruned student, exported as a real INT8 ONNX."""

from compress.commands.runner import run_stage
from compress.config.benchmark import BenchmarkParams
from compress.config.compute import ComputeParams
from compress.config.data import DataParams
from compress.config.distill import DistillParams
from compress.config.file import load_sections
from compress.config.quantize import QuantizeParams
from compress.core.artifacts import Artifacts
from compress.steps.quantize import quantize
from compress.train.loop import resolve_compute


def main() -> None:
    quantize_params, distill, data, benchmark, compute = load_sections(
        QuantizeParams, DistillParams, DataParams, BenchmarkParams, ComputeParams
    )
    quantize(
        quantize_params,
        distill,
        data.augment,
        benchmark,
        Artifacts.here(),
        resolve_compute(compute),
    )


if __name__ == "__main__":
    run_stage(main, data_parallel=True)
