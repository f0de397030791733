"""Prepared splits as shards: a round trip over several shards, the digits default against the
source it came from, corrupt shards named, and loading that gives the same model with any number
of loader workers."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from compress.config.data import AugmentParams
from compress.core.artifacts import Artifacts
from compress.core.errors import PipelineError
from compress.data import shards
from compress.data.loaders import (
    SeededSampler,
    eval_loader,
    load_info,
    load_split,
    make_loader,
    open_split,
    training_dataset,
)
from compress.data.shards import ShardReader, ShardWriter
from compress.data.sources import load_digits_source
from compress.train.loop import Compute, Schedule, cross_entropy_objective, fit, seed_everything
from tests.factories import tiny_cnn


def _write(directory: Path, images: np.ndarray, labels: np.ndarray) -> ShardReader:
    writer = ShardWriter(directory, "train", images.dtype.name, images.shape[1:])
    for image, label in zip(images, labels, strict=True):
        writer.add(image, label)
    writer.close()
    return ShardReader(directory, "train")


def test_round_trip_over_several_shards(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(shards, "SHARD_BYTES", 7 * 3 * 5 * 5)  # 7 uint8 images per shard
    generator = np.random.default_rng(0)
    images = generator.integers(0, 256, (40, 3, 5, 5), dtype=np.uint8)
    labels = generator.integers(0, 4, 40)
    reader = _write(tmp_path, images, labels)
    assert len(reader.files) == 6 and reader.counts == [7, 7, 7, 7, 7, 5]
    assert all(np.array_equal(reader[i], images[i]) for i in (0, 6, 7, 13, 35, 39))
    np.testing.assert_array_equal(np.concatenate(list(reader.chunks(size=4))), images)
    np.testing.assert_array_equal(reader.read_all(), images)
    np.testing.assert_array_equal(reader.labels, labels)


def test_digits_default_holds_exactly_the_source_images(prepared_artifacts: Artifacts) -> None:
    """Float32 digits are stored as they are (not rounded to 8 bits): every prepared image is
    bit-for-bit one of the source's, each once."""
    source = {
        sample.image.tobytes(): sample.label for sample in load_digits_source(None, 8, None).samples
    }
    seen = []
    for name in ("train", "val", "test", "calibration"):
        reader = open_split(name, prepared_artifacts.prepared_dir)
        assert reader.dtype == np.float32
        for index in range(len(reader)):
            key = reader[index].tobytes()
            assert source[key] == reader.labels[index]
            seen.append(key)
    assert len(seen) == len(set(seen)) == len(source)


@pytest.mark.parametrize(
    "damage",
    [
        lambda path: path.write_bytes(path.read_bytes()[:-100]),  # truncated
        lambda path: path.write_bytes(b"not a numpy file at all" * 10),
    ],
    ids=["truncated", "garbage"],
)
def test_a_corrupt_shard_is_named(prepared_copy: Artifacts, damage) -> None:
    shard = prepared_copy.prepared_dir / "val-00000.npy"
    damage(shard)
    with pytest.raises(PipelineError, match=r"Shard '.*val-00000\.npy' is (corrupt|unreadable)"):
        load_split("val", prepared_copy.prepared_dir)


def _one_epoch(artifacts: Artifacts, workers: int) -> dict[str, torch.Tensor]:
    info = load_info(artifacts.prepared_dir)
    seed_everything(0)
    model = tiny_cnn(info.num_classes, info.channels)
    train = training_dataset(
        info, AugmentParams(crop_padding=1, horizontal_flip=True), artifacts.prepared_dir
    )
    val = eval_loader("val", info, artifacts.prepared_dir)
    fit(
        model,
        cross_entropy_objective,
        make_loader(train, 32, True, seed=3, workers=workers),
        val,
        Schedule(epochs=1, lr=0.05, weight_decay=5e-4),
        f"workers={workers}",
        Compute(loader_workers=workers),
    )
    return model.state_dict()


def _epochs_with_zero_and_two_workers(artifacts: Artifacts) -> list[dict[str, torch.Tensor]]:
    return [_one_epoch(artifacts, workers) for workers in (0, 2)]


def test_the_same_model_with_zero_or_two_loader_workers(prepared_artifacts: Artifacts) -> None:
    """Order and augmentations (shifts and flips) are seeded per image in the main process.
    Trained in a fresh process, as a stage trains: in the pytest process, after some 270 tests
    of every library, the kernel has killed it with SIGSEGV (si_code SI_KERNEL, main thread in
    `poll`) while it joined the exiting loader workers, i.e. while delivering their SIGCHLD."""
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
        alone, with_workers = pool.submit(
            _epochs_with_zero_and_two_workers, prepared_artifacts
        ).result()
    assert all(torch.equal(alone[key], with_workers[key]) for key in alone)


def test_processes_share_one_permutation_in_equal_parts() -> None:
    """DDP: every process runs as many batches as the others (else they deadlock), and
    together they see the single-process order, every image at least once."""
    alone = list(SeededSampler(7, torch.Generator().manual_seed(1), 0, 1, True))
    ranks = [list(SeededSampler(7, torch.Generator().manual_seed(1), r, 2, True)) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == 4
    assert [key for pair in zip(*ranks, strict=True) for key in pair][:7] == alone
    assert {index for index, _ in ranks[0] + ranks[1]} == set(range(7))
