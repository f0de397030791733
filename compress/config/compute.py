"""The `compute:` section: the device, loader workers and data-parallel processes of the training
stages."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from compress.config.section import Section


class ComputeParams(Section):
    section: ClassVar[str] = "compute"

    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: CUDA when available, else CPU
    loader_workers: int = Field(0, ge=0, le=64)  # processes that read and augment batches
    nodes: int = Field(1, ge=1)  # machines training together (DDP launched by torchrun)
    processes_per_node: int = Field(1, ge=1)  # one per GPU, or CPU processes
    rendezvous: str | None = Field(None, pattern=r"^[^:\s]+:\d+$")  # host:port of node 0

    @model_validator(mode="after")
    def _rendezvous_for_nodes(self) -> ComputeParams:
        if self.nodes > 1 and self.rendezvous is None:
            raise ValueError(
                f"compute.nodes is {self.nodes}: set compute.rendezvous to 'host:port' of the "
                "first node, reachable from every node"
            )
        return self

    def batch_split_problems(self, sections: dict[str, Section]) -> list[str]:
        """Each data-parallel process takes an equal share of every training batch: a section's
        `batch_size` must split over `nodes x processes_per_node`."""
        world = self.nodes * self.processes_per_node
        return [
            f"{name}.batch_size={section.batch_size} cannot be split evenly over the {world} "
            "training processes (compute.nodes x compute.processes_per_node); make it a "
            "multiple of them"
            for name, section in sections.items()
            if getattr(section, "batch_size", None) and section.batch_size % world
        ]
