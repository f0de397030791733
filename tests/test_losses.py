"""The distillation loss and objective on crafted tensors and small real models."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from compress.core.errors import PipelineError
from compress.models.builders import build_model
from compress.train.losses import (
    DistillationObjective,
    KDSettings,
    decoupled_kl,
    forward_kl,
    kd_loss,
    linear_schedule,
    reverse_kl,
)


@pytest.fixture
def logits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    student = torch.randn(16, 10, generator=generator)
    teacher = torch.randn(16, 10, generator=generator) * 3
    labels = torch.randint(0, 10, (16,), generator=generator)
    return student, teacher, labels


def test_alpha_one_is_plain_cross_entropy(logits) -> None:
    student, teacher, labels = logits
    assert torch.equal(
        kd_loss(student, teacher, labels, 1.0, 4.0), F.cross_entropy(student, labels)
    )


def test_kl_term_is_zero_for_identical_logits(logits) -> None:
    student, _, labels = logits
    for divergence in (forward_kl, reverse_kl):
        assert divergence(student, student.clone(), 4.0).abs().item() < 1e-6
    assert torch.allclose(
        kd_loss(student, student.clone(), labels, 0.0, 4.0), torch.tensor(0.0), atol=1e-5
    )


def test_temperature_squared_scaling(logits) -> None:
    student, teacher, labels = logits
    for temperature in (1.0, 4.0, 10.0):
        soft_only = kd_loss(student, teacher, labels, 0.0, temperature)
        assert torch.allclose(soft_only, temperature**2 * forward_kl(student, teacher, temperature))
    mixed = kd_loss(student, teacher, labels, 0.3, 4.0)
    expected = 0.3 * F.cross_entropy(student, labels) + 0.7 * 16 * forward_kl(student, teacher, 4.0)
    assert torch.allclose(mixed, expected)


def test_forward_kl_matches_definition_and_reverse_differs() -> None:
    teacher = torch.log(torch.tensor([[0.5, 0.5, 1e-6]]))
    student = torch.log(torch.tensor([[0.98, 0.01, 0.01]]))
    p_t, p_s = F.softmax(teacher, 1), F.softmax(student, 1)
    expected_forward = (p_t * (p_t.log() - p_s.log())).sum()
    expected_reverse = (p_s * (p_s.log() - p_t.log())).sum()
    assert torch.allclose(forward_kl(student, teacher, 1.0), expected_forward, atol=1e-5)
    assert torch.allclose(reverse_kl(student, teacher, 1.0), expected_reverse, atol=1e-5)
    assert abs(expected_forward - expected_reverse) > 0.1


def test_decoupled_kd_splits_forward_kl_as_its_paper_says(logits) -> None:
    """Zhao et al. 2022, eq. 7: KL = TCKD + (1 - p_target of the teacher) * NCKD, per image; so
    decoupled KD with that weight as beta is forward KL, and its own beta frees the second term."""
    student, teacher, labels = logits
    for index in range(len(labels)):
        one = slice(index, index + 1)
        for temperature in (1.0, 4.0):
            p_target = F.softmax(teacher[one] / temperature, 1)[0, labels[index]].item()
            decoupled = decoupled_kl(
                student[one], teacher[one], labels[one], temperature, beta=1 - p_target
            )
            assert torch.allclose(
                decoupled, forward_kl(student[one], teacher[one], temperature), atol=1e-5
            )
    assert decoupled_kl(student, student.clone(), labels, 4.0, beta=8.0).abs().item() < 1e-5
    only_target_split = decoupled_kl(student, teacher, labels, 4.0, beta=0.0)
    assert decoupled_kl(student, teacher, labels, 4.0, beta=8.0) > only_target_split > 0


def test_linear_temperature_schedule() -> None:
    assert linear_schedule(8.0, 2.0, 0.0) == 8.0
    assert linear_schedule(8.0, 2.0, 0.5) == 5.0
    assert linear_schedule(8.0, 2.0, 1.0) == 2.0


def test_teacher_is_bit_identical_after_a_training_step() -> None:
    torch.manual_seed(0)
    teacher = build_model("resnet18", 10, 1, 8)
    student = build_model("shufflenet_v2_x0_5", 10, 1, 8)
    before = {key: value.clone() for key, value in teacher.state_dict().items()}
    objective = DistillationObjective(
        teacher,
        student,
        (1, 8, 8),
        KDSettings(0.5, 4.0, 4.0, feature_weight=1.0, student_layer="conv5"),
    )
    objective.train()
    parameters = list(student.parameters()) + [p for p in objective.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(parameters, lr=0.5, momentum=0.9)
    student.train()
    for _ in range(2):
        loss = objective(student, torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,)))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert not teacher.training and all(not p.requires_grad for p in teacher.parameters())
    for key, value in teacher.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert all(p.grad is None for p in teacher.parameters())


def test_feature_adapter_maps_student_channels_to_teacher_channels() -> None:
    teacher = build_model("resnet18", 10, 1, 8)
    student = build_model("shufflenet_v2_x0_5", 10, 1, 8)
    objective = DistillationObjective(
        teacher,
        student,
        (1, 8, 8),
        KDSettings(0.5, 4.0, 4.0, feature_weight=1.0, student_layer="conv5"),
    )
    assert objective.adapter.weight.shape == (512, 1024, 1, 1)
    objective(student, torch.randn(4, 1, 8, 8), torch.randint(0, 10, (4,)))
    assert objective.feature_loss(objective.teacher_features.output).ndim == 0
    objective.close()
    student(torch.randn(2, 1, 8, 8))
    assert not student.conv5._forward_hooks


def test_unknown_feature_layer_lists_the_layers() -> None:
    teacher = build_model("resnet18", 10, 1, 8)
    student = build_model("shufflenet_v2_x0_5", 10, 1, 8)
    with pytest.raises(PipelineError, match=r"distill.feature.student_layer='conv9'.*conv5"):
        DistillationObjective(
            teacher,
            student,
            (1, 8, 8),
            KDSettings(0.5, 4.0, 4.0, feature_weight=1.0, student_layer="conv9"),
        )


def test_stored_teacher_outputs_give_the_live_loss() -> None:
    """Logits and feature map handed in with the batch (as stage teacher_outputs stores them)
    give the loss the teacher computes on it, feature term included; and they are what the loss
    reads: other logits or another map give another loss."""
    torch.manual_seed(0)
    teacher = build_model("resnet18", 10, 1, 8)
    student = build_model("shufflenet_v2_x0_5", 10, 1, 8).eval()
    settings = KDSettings(0.5, 4.0, 4.0, feature_weight=1.0, student_layer="conv5")
    images, labels = torch.randn(4, 1, 8, 8), torch.randint(0, 10, (4,))
    with DistillationObjective(teacher, student, (1, 8, 8), settings) as objective:
        live = objective(student, images, labels)
        logits = teacher(images).detach()
        features = objective.teacher_features.output.detach().clone()
        assert torch.equal(objective(student, images, labels, logits, features), live)
        assert objective(student, images, labels, 5 * torch.randn_like(logits), features) != live
        assert objective(student, images, labels, logits, torch.zeros_like(features)) != live
