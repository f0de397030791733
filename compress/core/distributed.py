"""Distributed data-parallel training launched by torchrun: joining the process group (NCCL on
GPUs, Gloo on CPUs), the few collectives the training loop needs, and the rule that only rank 0
writes.

Every rank runs the whole stage on the same inputs with the same seeds, so the steps that must
see the whole model (Torch-Pruning, NNCF calibration, export) reach the same result on every
rank; each training run then starts by broadcasting rank 0's weights (DistributedDataParallel
does this when it wraps the model, and refuses to start if any rank's shapes differ). Ranks
other than 0 run in a scratch mirror of the repository whose files link to the real ones: they
read every input, and whatever they write lands in the scratch folder, which is deleted.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)

MIRROR_SKIPPED = {".git", ".dvc", ".venv", "__pycache__"}
# Raw inputs only `prepare` reads, and it never runs under torchrun: a team's image folder of
# 100,000 files would otherwise become 100,000 links per rank.
MIRROR_UNREAD = {Path("data/input")}
# NCCL moves CUDA tensors only: the loss sums and rank-0 decisions are CPU tensors, which go
# through Gloo on GPU machines too.
BACKENDS = {"cuda": "cpu:gloo,cuda:nccl", "cpu": "gloo"}


def launched_by_torchrun() -> bool:
    return "TORCHELASTIC_RUN_ID" in os.environ or "LOCAL_RANK" in os.environ


def join_process_group(device: str) -> tuple[int, int]:
    """(rank, world size) of this process: (0, 1) unless torchrun started several."""
    if not launched_by_torchrun() or int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return 0, 1
    if not dist.is_initialized():
        if device == "cuda":
            torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
        dist.init_process_group(BACKENDS[device])
        log.info("Rank %d of %d (%s)", dist.get_rank(), dist.get_world_size(), dist.get_backend())
    return dist.get_rank(), dist.get_world_size()


def rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def barrier() -> None:
    if rank_and_world()[1] > 1:
        dist.barrier()


def sum_across_ranks(values: list[float]) -> list[float]:
    """Element-wise sums over every rank (the values themselves when alone)."""
    if rank_and_world()[1] == 1:
        return values
    tensor = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(tensor)
    return tensor.tolist()


def from_rank_zero(values: list[float]) -> list[float]:
    """Rank 0's values on every rank, so that every rank takes the same decisions."""
    if rank_and_world()[1] == 1:
        return values
    tensor = torch.tensor(values, dtype=torch.float64)
    dist.broadcast(tensor, src=0)
    return tensor.tolist()


def average_gradients(parameters: list[torch.nn.Parameter]) -> None:
    """For parameters outside the DDP-wrapped model (a distillation adapter)."""
    world = rank_and_world()[1]
    for parameter in parameters:
        if world > 1 and parameter.grad is not None:
            dist.all_reduce(parameter.grad)
            parameter.grad /= world


def mirror(root: Path, scratch: Path) -> None:
    """`scratch` as a copy of `root`'s folders whose files are links to the real files: reads
    see the inputs; an atomic write replaces the link, never the real file."""
    for folder, subfolders, files in os.walk(root):
        relative = Path(folder).relative_to(root)
        subfolders[:] = [
            name
            for name in subfolders
            if name not in MIRROR_SKIPPED and relative / name not in MIRROR_UNREAD
        ]
        (scratch / relative).mkdir(exist_ok=True)
        for name in files:
            (scratch / relative / name).symlink_to(Path(folder) / name)


@contextmanager
def rank_zero_writes(root: Path) -> Iterator[None]:
    """Run the body in `root` on rank 0 and in a deleted-afterwards mirror on other ranks
    (the rank torchrun gave this process, known before the process group is joined)."""
    rank = int(os.environ.get("RANK", "0")) if launched_by_torchrun() else 0
    if rank == 0:
        yield
        return
    scratch = Path(tempfile.mkdtemp(prefix=f".rank{rank}-"))
    previous = Path.cwd()
    try:
        mirror(root, scratch)
        os.chdir(scratch)
        yield
    finally:
        os.chdir(previous)
        shutil.rmtree(scratch, ignore_errors=True)
