"""Students of each reference kind through distill -> prune -> quantize -> evaluate on real
digits with tiny schedules: a timm model and a factory from a team's own code (here
tests/factories.py), as `distill.student` names them."""

from __future__ import annotations

import json
import shutil

import onnx
import pytest

from compress.artifacts import Artifacts
from compress.checkpoints import load_model, read_checkpoint
from compress.models import count_macs_params
from compress.params import (
    AcceptanceGate,
    AugmentParams,
    BenchmarkParams,
    DistillParams,
    EvaluateParams,
    PruneParams,
    QATParams,
    QuantizeParams,
)
from compress.steps.distill import distill
from compress.steps.evaluate import evaluate
from compress.steps.prune import prune
from compress.steps.quantize import quantize
from tests.conftest import REPO_ROOT

BENCH = BenchmarkParams(batch_sizes=[1], warmup_runs=1, timed_runs=3, intra_op_threads=2)
AUGMENT = AugmentParams(crop_padding=1, horizontal_flip=False)
EVALUATE = EvaluateParams(
    batch_sizes=[1],
    warmup_runs=1,
    timed_runs=3,
    repeats=1,
    runtimes=["onnxruntime"],
    gate=AcceptanceGate(max_accuracy_drop=1.0, max_class_drop=1.0, max_ece_increase=1.0),
)


@pytest.mark.parametrize(
    ("student", "kwargs"),
    [
        # slow (40 s); the default suite builds and round-trips the timm model in test_models
        pytest.param("timm:mobilenetv3_small_050", {"drop_rate": 0.1}, marks=pytest.mark.slow),
        ("tests.factories:tiny_cnn", {"width": 24}),
    ],
)
def test_student_kind_runs_the_whole_chain(
    baseline_artifacts: Artifacts, tmp_path, student: str, kwargs: dict
) -> None:
    artifacts = Artifacts(tmp_path)
    shutil.copytree(baseline_artifacts.root / "data", tmp_path / "data")
    shutil.copytree(baseline_artifacts.root / "models", tmp_path / "models")
    shutil.copy(REPO_ROOT / "params.yaml", artifacts.params_file)  # the shipped model's provenance
    params = DistillParams(student=student, student_kwargs=kwargs, epochs=1, control=False)
    distill(params, AUGMENT, artifacts)
    payload = read_checkpoint(artifacts.student_pt)
    assert (payload["arch"], payload["arch_kwargs"]) == (student, kwargs)

    prune(
        PruneParams(rounds=1, finetune_epochs=1, target_ratio=0.4),
        params,
        AUGMENT,
        BENCH,
        artifacts,
    )
    distilled, _ = load_model(artifacts.student_pt)
    pruned, _ = load_model(artifacts.pruned_pt)  # rebuilt from the reference and the history
    shape = (1, 8, 8)
    assert count_macs_params(pruned, shape)[0] < 0.7 * count_macs_params(distilled, shape)[0]

    quantize(QuantizeParams(qat=QATParams(mode="never")), params, AUGMENT, BENCH, artifacts)
    graph = onnx.load(artifacts.quantized_onnx).graph
    int8_layers = json.loads(artifacts.quantize_metrics.read_text())["layers"]["int8"]
    assert int8_layers  # every layer but the first convolution and the classifier
    assert sum(t.data_type == onnx.TensorProto.INT8 for t in graph.initializer) >= len(int8_layers)

    evaluate(EVALUATE, artifacts)
    measured = json.loads(artifacts.evaluate_metrics.read_text())["candidates"]
    assert {"distilled", "pruned", "quantized"} <= set(measured)
    assert artifacts.shipped_onnx.is_file()
