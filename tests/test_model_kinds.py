"""Students of each reference kind through distill -> prune -> quantize -> evaluate on real
digits with tiny schedules: a timm model and a factory from a team's own code (here
tests/factories.py), as `distill.student` names them; and a teacher given as an ONNX file."""

from __future__ import annotations

import json
import shutil

import onnx
import pytest
import torch

from compress.compression.students import resolve_student
from compress.config.benchmark import BenchmarkParams
from compress.config.data import AugmentParams
from compress.config.distill import FALLBACK_STUDENT, TEACHER_STUDENT, DistillParams
from compress.config.evaluate import AcceptanceGate, EvaluateParams
from compress.config.prune import PruneParams
from compress.config.quantize import QATParams, QuantizeParams
from compress.config.teacher import TeacherParams
from compress.core.artifacts import REFERENCE_CANDIDATE, Artifacts
from compress.data.loaders import load_info, make_loader, training_dataset
from compress.models.builders import count_macs_params
from compress.models.checkpoints import load_model, read_checkpoint
from compress.models.onnx_teacher import OnnxTeacher
from compress.runtime.contract import read_contract
from compress.steps.baseline import baseline
from compress.steps.distill import distill
from compress.steps.evaluate import evaluate
from compress.steps.prune import prune
from compress.steps.quantize import quantize
from compress.steps.teacher_outputs import teacher_outputs
from compress.train.distillation import distillation_dataset, load_teacher
from tests.conftest import forward_in_stage_batches
from tests.repos import REPO_ROOT

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
    prune_quantize_evaluate(artifacts, params)


def test_onnx_teacher_is_measured_as_it_is_and_runs_the_whole_chain(
    baseline_artifacts: Artifacts, tmp_path
) -> None:
    """A teacher known only as an ONNX file (here exported from the trained torch teacher):
    baseline measures it without training, the student learns from its ONNX Runtime logits,
    evaluate compares against it."""
    artifacts = Artifacts(tmp_path)
    shutil.copytree(baseline_artifacts.root / "data", tmp_path / "data")
    (tmp_path / "models/input").mkdir(parents=True)
    shutil.copy(baseline_artifacts.teacher_onnx, tmp_path / "models/input/team_teacher.onnx")
    shutil.copy(REPO_ROOT / "params.yaml", artifacts.params_file)
    torch_measured = json.loads(baseline_artifacts.baseline_metrics.read_text())

    measured = baseline(
        TeacherParams(onnx="models/input/team_teacher.onnx", epochs=5), AUGMENT, BENCH, artifacts
    )
    assert (measured["arch"], measured["train_seconds"]) == ("onnx", 0.0)
    assert measured["accuracy"] == torch_measured["onnx_accuracy"]
    assert measured["macs"] == pytest.approx(torch_measured["macs"], rel=0.02)
    assert set(measured["latency"]) == {"threads", "onnxruntime", "end_to_end_batch_1"}
    assert read_checkpoint(artifacts.teacher_pt)["arch"] == "onnx"  # weights_only load
    assert (
        read_contract(artifacts.teacher_onnx).classes
        == read_contract(baseline_artifacts.teacher_onnx).classes
    )

    info = load_info(artifacts.prepared_dir)
    assert resolve_student(DistillParams(), info, artifacts)[0].student == FALLBACK_STUDENT
    params = DistillParams(
        student="tests.factories:tiny_cnn", epochs=2, lr_warmup_epochs=0, control=False
    )
    teacher_outputs(params, AUGMENT, artifacts)  # ONNX Runtime's logits, once
    taught = distillation_dataset(info, AUGMENT, params, artifacts)
    items = [taught[(index, 5)] for index in range(len(taught))]  # view 5 of every image
    onnx_logits = forward_in_stage_batches(load_teacher(artifacts, params), items)
    assert torch.equal(torch.stack([logits for *_, logits in items]), onnx_logits)
    distilled = distill(params, AUGMENT, artifacts)["distilled"]
    from_torch = Artifacts(tmp_path / "torch_teacher")  # the same student from the torch teacher
    shutil.copytree(baseline_artifacts.root / "data", from_torch.root / "data")
    shutil.copytree(baseline_artifacts.root / "models", from_torch.root / "models")
    reference = distill(params, AUGMENT, from_torch)
    assert reference["teacher"]["accuracy"] == measured["accuracy"]
    assert distilled["accuracy"] == pytest.approx(reference["distilled"]["accuracy"], abs=0.01)
    assert distilled["teacher_agreement"] == pytest.approx(
        reference["distilled"]["teacher_agreement"], abs=0.01
    )
    evaluated = prune_quantize_evaluate(artifacts, params)
    assert evaluated[REFERENCE_CANDIDATE]["accuracy"] == measured["accuracy"]


def test_onnx_teacher_logits_are_the_torch_teachers(baseline_artifacts: Artifacts) -> None:
    """On an augmented training batch, as distillation feeds it, and counted alike."""
    torch_teacher, payload = load_model(baseline_artifacts.teacher_pt)
    shape = tuple(payload["input_shape"])
    onnx_teacher = OnnxTeacher(baseline_artifacts.teacher_onnx, "teacher.onnx", shape, 10)
    info = load_info(baseline_artifacts.prepared_dir)
    loader = make_loader(
        training_dataset(
            info,
            AugmentParams(crop_padding=1, horizontal_flip=False),
            baseline_artifacts.prepared_dir,
        ),
        64,
        True,
        0,
    )
    images, _ = next(iter(loader))
    with torch.no_grad():
        expected = torch_teacher(images)
    assert torch.allclose(onnx_teacher(images), expected, atol=1e-4)
    assert onnx_teacher.macs == pytest.approx(count_macs_params(torch_teacher, shape)[0], rel=0.02)


def prune_quantize_evaluate(artifacts: Artifacts, params: DistillParams) -> dict:
    """The rest of the chain after distill, with tiny schedules; evaluate's candidates."""
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
    return measured


def test_auto_student_is_the_teacher_cut_when_the_teacher_is_a_torch_model(
    baseline_artifacts: Artifacts,
) -> None:
    info = load_info(baseline_artifacts.prepared_dir)
    chosen, (student, record) = resolve_student(DistillParams(), info, baseline_artifacts)
    assert (chosen.student, record["arch"]) == (TEACHER_STUDENT, "resnet18")
    teacher_macs = count_macs_params(load_model(baseline_artifacts.teacher_pt)[0], (1, 8, 8))[0]
    cut_share = 1 - count_macs_params(student, (1, 8, 8))[0] / teacher_macs
    assert cut_share >= DistillParams().init_ratio
    named = DistillParams(student="mobilenet_v2")
    assert resolve_student(named, info, baseline_artifacts) == (named, None)
