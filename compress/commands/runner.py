"""The edge of every stage: logging set up once, and a user's mistake turned into one readable
paragraph and exit code 1, a transient I/O error into TRANSIENT_EXIT_CODE, instead of a
traceback."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import torch.distributed as dist

from compress.config.compute import ComputeParams
from compress.config.file import load_sections
from compress.core.distributed import launched_by_torchrun, rank_zero_writes
from compress.core.errors import PipelineError
from compress.runtime.errors import InputError, exit_for

QUIET_LIBRARIES = ("great_expectations", "torch_pruning", "nncf", "httpx")


def configure_logging() -> None:
    """INFO on the console; under torchrun only rank 0 logs progress (the others warnings)."""
    follower = launched_by_torchrun() and os.environ.get("RANK", "0") != "0"
    logging.basicConfig(
        level=logging.WARNING if follower else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for noisy in QUIET_LIBRARIES:
        logging.getLogger(noisy).setLevel(logging.WARNING)


NODE_RANK_VARIABLE = "PET_NODE_RANK"  # torchrun's own name for its --node-rank


def torchrun_command(module: str, compute: ComputeParams, node_rank: int) -> list[str]:
    """`torchrun` for this stage's module with `compute.nodes` x `compute.processes_per_node`
    processes: standalone on one machine; across several, a static rendezvous at
    `compute.rendezvous` whose node 0 (the machine at that address, running `dvc repro`) holds
    global rank 0, the one that writes the outs. (A c10d rendezvous would rank the machines by
    host name, so the outs could land on another machine than the one running `dvc repro`.)"""
    command = [sys.executable, "-m", "torch.distributed.run", f"--nnodes={compute.nodes}"]
    command.append(f"--nproc-per-node={compute.processes_per_node}")
    if compute.nodes == 1:
        return [*command, "--standalone", "-m", module]
    host, port = str(compute.rendezvous).rsplit(":", 1)
    command += [f"--node-rank={node_rank}", f"--master-addr={host}", f"--master-port={port}"]
    return [*command, "-m", module]


def this_node_rank(nodes: int) -> int:
    """This machine's place among `compute.nodes`: `PET_NODE_RANK`, 0 when unset."""
    value = os.environ.get(NODE_RANK_VARIABLE, "0")
    if not value.isdigit() or int(value) >= nodes:
        raise PipelineError(
            f"{NODE_RANK_VARIABLE}={value!r}, but compute.nodes is {nodes}: leave it unset (0) on "
            f"the machine at compute.rendezvous, which runs `dvc repro` and writes the outs, and "
            f"set it to 1..{nodes - 1} on the others, one number per machine."
        )
    return int(value)


def launch_data_parallel() -> bool:
    """Start the stage again under torchrun when `compute` asks for several processes and
    this is not already one of them; False when the stage should just run here."""
    (compute,) = load_sections(ComputeParams)
    world = compute.nodes * compute.processes_per_node
    if world == 1 or launched_by_torchrun():
        return False
    node_rank = this_node_rank(compute.nodes)
    module = getattr(sys.modules["__main__"].__spec__, "name", None)
    if module is None:
        raise PipelineError(
            "Run the stage as `python -m stages.<name>` to train on several processes."
        )
    logging.getLogger(__name__).info("Launching %d processes with torchrun", world)
    done = subprocess.run(torchrun_command(module, compute, node_rank), check=False)
    if done.returncode:
        sys.exit(done.returncode)
    return True


def run_stage(main: Callable[[], None], data_parallel: bool = False) -> None:
    """Run a stage's main(): a PipelineError (any InputError) or a permission / missing-path
    OSError exits 1 with its paragraph, a transient OSError (disk full, a vanished network
    mount: `compress.runtime.errors.TRANSIENT_ERRNOS`) exits TRANSIENT_EXIT_CODE. A training stage
    (`data_parallel`) runs under torchrun when `compute` asks for several processes; then
    only rank 0 writes."""
    configure_logging()
    try:
        if data_parallel and launch_data_parallel():
            return
        with rank_zero_writes(Path.cwd()):
            main()
        if dist.is_initialized():
            dist.destroy_process_group()
    except (InputError, OSError) as error:  # PipelineError, the runtime's own, or I/O
        exit_for(
            error,
            "Nothing was half-written (outs are written to a temporary file and renamed); "
            "rerun once the disk or mount is back.",
        )
