"""Model references (torchvision, timm, a team's own factory), their checkpoints, warm starts
and the student cut from the teacher, on real models and real Torch-Pruning."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from compress.compression import pruning
from compress.compression.pruning import MacsPruner
from compress.compression.students import build_student, cut_from_teacher
from compress.config.distill import DistillParams
from compress.config.teacher import TeacherParams
from compress.core.artifacts import Artifacts
from compress.core.errors import PipelineError
from compress.data.loaders import DatasetInfo
from compress.models.builders import (
    build_model,
    count_macs_params,
    output_positions,
    split_reference,
    weight_macs,
)
from compress.models.checkpoints import architecture, load_model, load_warm_start, save_checkpoint

INFO = DatasetInfo(
    classes=[str(c) for c in range(10)], channels=1, image_size=8, mean=[0.3], std=[0.4]
)


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("resnet18", ("torchvision", "resnet18")),
        ("torchvision:resnet18", ("torchvision", "resnet18")),
        ("timm:mobilenetv3_small_050", ("timm", "mobilenetv3_small_050")),
        ("tests.factories:tiny_cnn", ("factory", "tests.factories:tiny_cnn")),
    ],
)
def test_reference_kinds(reference: str, expected: tuple[str, str]) -> None:
    assert split_reference(reference) == expected


@pytest.mark.parametrize(
    ("reference", "kwargs", "message"),
    [
        ("timm:mobilenetv3_smal_050", {}, "Did you mean timm:mobilenetv3_small_050"),
        ("resnet81", {}, "Did you mean resnet18"),
        (
            "tests.nowhere:tiny_cnn",
            {},
            "distill.student='tests.nowhere:tiny_cnn' cannot be imported",
        ),
        ("tests.factories:huge_cnn", {}, "cannot be imported"),
        ("tests.factories:not_a_model", {}, "returned a dict, not a torch nn.Module"),
        ("tests.factories:bare_sequential", {}, "returned a bare nn.Sequential"),
        ("tests.factories:tiny_cnn", {"depth": 3}, "arguments {'depth': 3}"),
    ],
)
def test_bad_references_name_the_param_and_the_fix(reference, kwargs, message: str) -> None:
    with pytest.raises(PipelineError, match=message.replace("(", r"\(").replace("{", r"\{")):
        build_model(reference, 10, 1, 8, "distill.student", kwargs)


def test_params_reject_what_is_not_a_reference() -> None:
    with pytest.raises(ValueError, match="teacher.arch 'my model.py' is not a model reference"):
        TeacherParams(arch="my model.py")
    with pytest.raises(ValueError, match="remove distill.student_checkpoint"):
        DistillParams(student="teacher", student_checkpoint="models/input/s.pt")


@pytest.mark.parametrize(
    ("reference", "kwargs"),
    [
        ("timm:mobilenetv3_small_050", {"drop_rate": 0.1}),
        ("tests.factories:tiny_cnn", {"width": 8}),
    ],
)
def test_timm_and_factory_models_round_trip_through_checkpoints(
    tmp_path: Path, reference: str, kwargs: dict
) -> None:
    model = build_model(reference, 10, 1, 8, kwargs=kwargs).eval()
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    path = tmp_path / "model.pt"
    save_checkpoint(path, model, reference, (1, 8, 8), 10, arch_kwargs=kwargs, adapt_stem="auto")
    loaded, payload = load_model(path)  # weights_only=True inside
    batch = torch.rand(4, 1, 8, 8)
    assert payload["arch_kwargs"] == kwargs
    assert torch.equal(loaded(batch), model(batch))


def test_stem_adaptation_is_a_choice() -> None:
    adapted = build_model("resnet18", 10, 1, 8)
    kept = build_model("resnet18", 10, 1, 8, stem="never")
    assert adapted.conv1.stride == (1, 1) and isinstance(adapted.maxpool, nn.Identity)
    assert kept.conv1.stride == (2, 2) and kept.conv1.in_channels == 1  # channels still fit
    assert isinstance(kept.maxpool, nn.MaxPool2d)


def test_warm_start_reinitialises_the_head_and_sums_rgb_filters(tmp_path: Path) -> None:
    """Weights made for 3-channel, 100-class inputs (as ImageNet-style weights are) start a
    1-channel, 10-class student: head fresh, first conv's filters summed over RGB."""
    source = build_model("tests.factories:tiny_cnn", 100, 3, 8)
    weights = source.state_dict()
    student = build_model("tests.factories:tiny_cnn", 10, 1, 8)
    fresh_head = student.head.weight.clone()
    changes = load_warm_start(student, weights, tmp_path / "w.pt", "tiny", 10)
    assert changes == [
        "features.0.weight adapted: (16, 3, 3, 3) in the file",
        "head.weight re-initialised: (100, 32) in the file",
        "head.bias re-initialised: (100,) in the file",
    ]
    first = weights["features.0.weight"].sum(dim=1, keepdim=True)
    assert torch.equal(student.features[0].weight, first)
    assert torch.equal(student.features[3].weight, weights["features.3.weight"])
    assert torch.equal(student.head.weight, fresh_head)
    wider = build_model("tests.factories:tiny_cnn", 10, 1, 8, kwargs={"width": 8}).state_dict()
    with pytest.raises(
        PipelineError, match=r"does not fit a 'tiny'.*features.1.weight \(8,\) vs \(16,\)"
    ):
        load_warm_start(student, wider, tmp_path / "w.pt", "tiny", 10)


def test_student_cut_from_the_teacher_has_the_requested_macs(tmp_path: Path) -> None:
    artifacts = Artifacts(tmp_path)
    teacher = build_model("resnet18", 10, 1, 8)
    save_checkpoint(artifacts.teacher_pt, teacher, "resnet18", (1, 8, 8), 10)
    teacher_macs = count_macs_params(teacher, (1, 8, 8))[0]
    student, record = build_student(
        DistillParams(student="teacher", init_ratio=0.6), INFO, artifacts
    )
    macs = count_macs_params(student, (1, 8, 8))[0]
    assert abs(macs / teacher_macs - 0.4) <= 0.05 * 0.4  # within 5 % of the requested MACs
    path = tmp_path / "student.pt"
    save_checkpoint(path, student, record["arch"], (1, 8, 8), 10, **architecture(record))
    reloaded, _ = load_model(path)
    batch = torch.rand(3, 1, 8, 8)
    assert torch.equal(reloaded(batch), student.eval()(batch))
    again, _ = cut_from_teacher(artifacts.teacher_pt, INFO, 0.6)  # what the control starts from
    assert all(
        torch.equal(a, b)
        for a, b in zip(again.state_dict().values(), student.state_dict().values(), strict=True)
    )


@pytest.mark.parametrize("arch", ["resnet18"])  # (mobilenet_v2, depthwise: 3 min, left out)
def test_pruning_counts_macs_exactly_only_when_the_weights_bound_allows(
    arch: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The weights' multiply-adds, read from channel counts, never exceed Torch-Pruning's
    exact count as channels go; so skipping the exact count while that bound is above the
    target takes exactly the steps counting every time takes: the same pruned weights."""
    models = []
    for counted_every_step in (False, True):
        torch.manual_seed(0)
        model = build_model(arch, 10, 1, 8)
        if counted_every_step:
            monkeypatch.setattr(pruning, "weight_macs", lambda positions: 0)
        pruner = MacsPruner(model, (1, 8, 8), 10, "l1", False, 0.9, round_to=8)
        start = pruner.macs()
        for share in (0.6, 0.4):
            pruner.prune_to(share * start)
            exact = count_macs_params(model, (1, 8, 8))[0]
            assert weight_macs(output_positions(model, (1, 8, 8))) <= exact <= share * start
        models.append(model)
    new, old = (model.state_dict() for model in models)
    assert new.keys() == old.keys() and all(torch.equal(new[k], old[k]) for k in new)


def test_warm_student_from_a_tracked_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """distill.student_checkpoint: weights for 3 channels and 2 classes start a 10-class gray
    student; a file outside models/input/ is refused."""
    artifacts = Artifacts(tmp_path)
    artifacts.teacher_input_dir.mkdir(parents=True)
    source = build_model("tests.factories:tiny_cnn", 2, 3, 8)
    torch.save(source.state_dict(), artifacts.teacher_input_dir / "warm.pt")
    params = DistillParams(
        student="tests.factories:tiny_cnn", student_checkpoint="models/input/warm.pt"
    )
    with caplog.at_level("INFO"):
        student, record = build_student(params, INFO, artifacts)
    assert "head.weight re-initialised: (2, 32) in the file" in caplog.text
    first = source.state_dict()["features.0.weight"].sum(dim=1, keepdim=True)
    assert torch.equal(student.features[0].weight, first)
    assert record["arch"] == "tests.factories:tiny_cnn"
    outside = params.model_copy(update={"student_checkpoint": "warm.pt"})
    with pytest.raises(PipelineError, match="distill.student_checkpoint 'warm.pt' is outside"):
        build_student(outside, INFO, artifacts)
