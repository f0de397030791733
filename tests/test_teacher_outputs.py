"""The teacher's outputs stored once per train image and view (stage `teacher_outputs`): they
are the teacher's forward pass on exactly the views the training loaders show, every view
in use, and a store that does not fit the data is named before training."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch

from compress.config.data import AugmentParams
from compress.config.distill import DistillParams
from compress.core.artifacts import Artifacts
from compress.core.errors import PipelineError
from compress.data.loaders import (
    SplitDataset,
    load_info,
    make_loader,
    train_augmentation,
    training_dataset,
    view_grid,
)
from compress.data.teacher_outputs import TaughtDataset, TeachingViews, read_meta, teaching_dataset
from compress.models.checkpoints import load_model
from compress.steps.teacher_outputs import teacher_outputs
from compress.train.distillation import distillation_dataset
from tests.conftest import forward_in_stage_batches

NO_FLIP = AugmentParams(crop_padding=1, horizontal_flip=False)


def _taught(artifacts: Artifacts, params: DistillParams | None = None) -> SplitDataset:
    info = load_info(artifacts.prepared_dir)
    return distillation_dataset(info, NO_FLIP, params or DistillParams(), artifacts)


def test_stored_logits_are_the_teachers_forward_pass_on_each_view(
    baseline_artifacts: Artifacts,
) -> None:
    """Bit for bit on the CPU, for each of the 9 views (1-pixel shifts) of the whole split."""
    teacher, _ = load_model(baseline_artifacts.teacher_pt)
    taught = _taught(baseline_artifacts)
    assert isinstance(taught, TaughtDataset) and taught.views == 9
    for view in range(taught.views):
        items = [taught[(index, view)] for index in range(len(taught))]
        expected = forward_in_stage_batches(teacher, items)
        assert torch.equal(torch.stack([logits for *_, logits in items]), expected), view


def test_loader_batches_carry_the_logits_of_the_views_they_show(
    baseline_artifacts: Artifacts,
) -> None:
    """Through a seeded training loader over three epochs: every batch's stored logits are the
    teacher's on that batch's images, and an image is shown in several of its views."""
    teacher, _ = load_model(baseline_artifacts.teacher_pt)
    taught = _taught(baseline_artifacts)
    loader = make_loader(taught, 64, True, seed=3)
    shown: Counter[bytes] = Counter()
    for _ in range(3):
        for images, _, logits in loader:
            with torch.no_grad():
                assert torch.allclose(teacher(images), logits, atol=1e-5)
            shown.update(image.numpy().tobytes() for image in images)
    assert len(shown) > 1.5 * len(taught)  # views differ: more distinct images than images


@pytest.mark.parametrize(("padding", "flip"), [(1, False), (2, True)])
def test_the_view_grid_is_what_the_random_augmentation_draws(padding: int, flip: bool) -> None:
    """Every image torchvision's RandomCrop (+ flip) makes is one grid view, and over a few
    hundred draws every grid view is made: storing the grid covers the live augmentation."""
    image = torch.randint(0, 256, (3, 8, 8), dtype=torch.uint8)  # every view distinct
    grid = view_grid(padding, flip)
    assert len(grid) == (2 * padding + 1) ** 2 * (2 if flip else 1)
    shown = {view: view.apply(image, padding) for view in grid}
    augment = train_augmentation(padding, flip, 8)
    drawn = set()
    for seed in range(400):
        torch.manual_seed(seed)
        augmented = augment(image)
        drawn |= {view for view, pixels in shown.items() if torch.equal(pixels, augmented)}
        assert any(torch.equal(pixels, augmented) for pixels in shown.values()), seed
    assert drawn == set(grid)


def test_each_image_is_stored_in_distinct_views() -> None:
    """`all` stores the whole grid for every image; a count stores that many distinct grid
    views per image, not the same ones for every image; a count above the grid is the grid."""
    shift = AugmentParams(crop_padding=1, horizontal_flip=True)
    grid = set(view_grid(1, True))
    every = TeachingViews.from_params(DistillParams(), shift)
    assert every.views == 18
    assert {every.view(7, slot) for slot in range(18)} == grid
    some = TeachingViews.from_params(DistillParams(teacher_views=4), shift)
    chosen = [frozenset(some.view(index, slot) for slot in range(4)) for index in range(50)]
    assert all(len(views) == 4 and views <= grid for views in chosen)
    assert len(set(chosen)) > 40  # per image: 3060 sets of 4 to choose from
    assert TeachingViews.from_params(DistillParams(teacher_views=30), shift).views == 18


def test_views_off_or_no_augmentation(baseline_copy: Artifacts) -> None:
    """`teacher_views: null` leaves the split as it is (the teacher runs live); without
    augmentation every view is the image itself, so one is stored."""
    teacher_outputs(DistillParams(teacher_views=None), NO_FLIP, baseline_copy)
    live = _taught(baseline_copy, DistillParams(teacher_views=None))
    assert not isinstance(live, TaughtDataset) and isinstance(live, SplitDataset)
    with pytest.raises(PipelineError, match=r"views None where training asks for 9"):
        _taught(baseline_copy)
    plain = AugmentParams(crop_padding=0, horizontal_flip=False)
    teacher_outputs(DistillParams(), plain, baseline_copy)
    assert read_meta(baseline_copy.teacher_outputs_dir)[0].views == 1


def test_outputs_that_do_not_fit_are_named(baseline_copy: Artifacts) -> None:
    """Made for other settings, another split or another teacher, or missing: named before
    any training."""
    directory = baseline_copy.teacher_outputs_dir
    info = load_info(baseline_copy.prepared_dir)
    train_set = training_dataset(info, NO_FLIP, baseline_copy.prepared_dir)
    wanted = TeachingViews.from_params(DistillParams(), NO_FLIP)
    wider = AugmentParams(crop_padding=2, horizontal_flip=False)
    with pytest.raises(PipelineError, match=r"crop_padding 1 where training asks for 2.*dvc rep"):
        teaching_dataset(
            train_set, baseline_copy, TeachingViews.from_params(DistillParams(), wider)
        )
    feature_kd = DistillParams(feature={"weight": 0.5})
    with pytest.raises(PipelineError, match=r"feature_layer None where training asks for 'layer4'"):
        teaching_dataset(train_set, baseline_copy, TeachingViews.from_params(feature_kd, NO_FLIP))
    assert isinstance(teaching_dataset(train_set, baseline_copy, wanted), TaughtDataset)
    rows = baseline_copy.prepared_dir / "train.rows.csv"
    original_rows = rows.read_text()
    first, second, *rest = original_rows.splitlines(keepends=True)
    rows.write_text("".join([first, *rest, second]))  # same images, another order
    with pytest.raises(PipelineError, match=r"before data/prepared/train.rows.csv changed"):
        teaching_dataset(train_set, baseline_copy, wanted)
    rows.write_text(original_rows)
    teacher_file = baseline_copy.teacher_pt
    teacher_file.write_bytes(teacher_file.read_bytes() + b"\0")  # another teacher
    with pytest.raises(PipelineError, match=r"before models/teacher.pt changed.*dvc repro teacher"):
        teaching_dataset(train_set, baseline_copy, wanted)
    baseline_copy.teacher_onnx.unlink()  # a file the store was computed from, gone
    with pytest.raises(PipelineError, match=r"before models/teacher.onnx, models/teacher.pt chan"):
        teaching_dataset(train_set, baseline_copy, wanted)
    meta_file = directory / "meta.json"
    meta = json.loads(meta_file.read_text())
    meta_file.write_text(json.dumps({key: meta[key] for key in ("settings", "count")}))
    with pytest.raises(PipelineError, match=r"views drawn at random.*dvc repro teacher_outputs"):
        teaching_dataset(train_set, baseline_copy, wanted)
    meta_file.write_text(json.dumps({key: meta[key] for key in ("settings", "layout", "count")}))
    with pytest.raises(
        PipelineError, match=r"records no teacher or train split.*dvc repro teacher"
    ):
        teaching_dataset(train_set, baseline_copy, wanted)
    meta_file.write_text(json.dumps(meta | {"count": meta["count"] - 1}))
    with pytest.raises(PipelineError, match=r"for \d+ train images.*dvc repro teacher_outputs"):
        teaching_dataset(train_set, baseline_copy, wanted)
    meta_file.unlink()
    with pytest.raises(PipelineError, match=r"meta.json' not found: run `dvc repro teacher_out"):
        teaching_dataset(train_set, baseline_copy, wanted)
