"""Size and ONNX Runtime latency of every model the pipeline has produced, measured side by side
in one process (interleaved rounds), with ratios against the fp32 teacher and the pruned student.

    python benchmarks/compare_models.py [--runs 200] [--threads 2]
"""

from __future__ import annotations

import argparse

from compress.core.artifacts import Artifacts
from compress.data.loaders import load_info
from compress.evaluation.benchmark import compare_onnx_latency

LABELS = {
    "teacher_fp32": "teacher fp32",
    "teacher_int8": "teacher int8 (PTQ)",
    "control": "control student",
    "distilled": "distilled student",
    "pruned": "pruned student",
    "quantized": "quantized student (QAT int8)",
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=200, help="timed runs per model and batch size")
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads")
    args = parser.parse_args()
    artifacts = Artifacts.here()
    present = {
        LABELS[name]: path for name, path in artifacts.candidates().items() if path.is_file()
    }
    info = load_info(artifacts.prepared_dir)
    latency = compare_onnx_latency(
        present,
        info.input_shape,
        [1, 32],
        warmup=10,
        runs=args.runs,
        threads=args.threads,
        repeats=10,
    )
    sizes = {name: path.stat().st_size for name, path in present.items()}
    references = [ref for ref in ("teacher fp32", "pruned student") if ref in present]
    header = f"{'model':30} {'size MB':>8} {'p50 b1 ms':>10} {'p50 b32 ms':>11}"
    header += "".join(
        f"  {'size/' + r.split()[0]:>12} {'b32/' + r.split()[0]:>12}" for r in references
    )
    print(header)
    for name in present:
        b1, b32 = latency[name]["batch_1"]["p50_ms"], latency[name]["batch_32"]["p50_ms"]
        row = f"{name:30} {sizes[name] / 2**20:8.2f} {b1:10.3f} {b32:11.3f}"
        for reference in references:
            row += f"  {sizes[name] / sizes[reference]:12.3f} {b32 / latency[reference]['batch_32']['p50_ms']:12.3f}"
        print(row)


if __name__ == "__main__":
    main()
