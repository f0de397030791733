"""The INT8 export kept only when it is faithful: ONNX Runtime's integer kernels on the
exported file score what the fake-quantized torch model scores on the test split, within
`quantize.max_onnx_accuracy_gap` beyond chance."""

from __future__ import annotations

import numpy as np
from torch import nn
from torch.utils.data import DataLoader

from compress.compression.quantization import export_int8, save_qat_checkpoint
from compress.config.benchmark import BenchmarkParams
from compress.config.quantize import QuantizeParams
from compress.core.artifacts import Artifacts
from compress.core.errors import PipelineError
from compress.data.loaders import DatasetInfo
from compress.evaluation.inference import split_logits
from compress.evaluation.uncertainty import apart_beyond
from compress.runtime.runners import onnxruntime_runner
from compress.train.loop import predict


def check_int8_export(
    quantized: nn.Module,
    test_loader: DataLoader,
    params: QuantizeParams,
    bench: BenchmarkParams,
    artifacts: Artifacts,
) -> dict[str, float]:
    """Test accuracy of the fake-quantized torch model and, in ONNX Runtime, of the INT8 file and
    its fp32 source, and the INT8 file's agreement with the torch model (one torch pass over the
    split); an export whose accuracy lies further than `max_onnx_accuracy_gap` from torch's,
    beyond chance at `export_check_false_alarm`, is an error: rounding flips a few near-tied
    images either way, which on a small split is a raw gap of more than a point."""
    torch_logits, torch_labels = predict(quantized, test_loader)
    torch_predictions = torch_logits.argmax(axis=1)
    torch_correct = torch_predictions == torch_labels
    torch_accuracy = float(np.mean(torch_correct))
    runners = {
        name: onnxruntime_runner(path, bench.intra_op_threads)
        for name, path in (("int8", artifacts.quantized_onnx), ("fp32", artifacts.pruned_onnx))
    }
    logits, labels = split_logits(runners, test_loader)
    onnx_predictions = logits["int8"].argmax(axis=1)
    onnx_correct = onnx_predictions == labels
    int8_accuracy = float(np.mean(onnx_correct))
    if apart_beyond(
        torch_correct,
        onnx_correct,
        params.max_onnx_accuracy_gap,
        params.export_check_false_alarm,
    ):
        raise PipelineError(
            f"The exported '{artifacts.quantized_onnx}' reaches {int8_accuracy:.4f} test accuracy in ONNX Runtime "
            f"but the fake-quantized torch model {torch_accuracy:.4f} on the same {len(labels)} images: "
            f"more than quantize.max_onnx_accuracy_gap={params.max_onnx_accuracy_gap} apart beyond chance "
            f"(false-alarm rate quantize.export_check_false_alarm={params.export_check_false_alarm}); "
            "the export is not faithful. Nothing was kept of this run's quantized files."
        )
    return {
        "qat_torch": torch_accuracy,
        "fp32_onnxruntime": float(np.mean(logits["fp32"].argmax(axis=1) == labels)),
        "int8_onnxruntime": int8_accuracy,
        "onnx_torch_agreement": float(np.mean(onnx_predictions == torch_predictions)),
    }


def write_checked_export(
    quantized: nn.Module,
    source: dict,
    info: DatasetInfo,
    test_loader: DataLoader,
    params: QuantizeParams,
    bench: BenchmarkParams,
    artifacts: Artifacts,
) -> tuple[int, dict[str, float]]:
    """The QAT checkpoint and the INT8 ONNX file, kept only when the export check passes: an
    unfaithful export is no out (and a leftover file would make the next `dvc pull` refuse to
    overwrite it)."""
    try:
        save_qat_checkpoint(artifacts.quantized_pt, quantized, source, info.input_shape)
        int8_weights = export_int8(
            quantized, info.input_shape, artifacts.quantized_onnx, info.contract()
        )
        return int8_weights, check_int8_export(quantized, test_loader, params, bench, artifacts)
    except PipelineError:
        for written in (artifacts.quantized_pt, artifacts.quantized_onnx):
            written.unlink(missing_ok=True)
        raise
