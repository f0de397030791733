"""The `data:` section: the source, the splits and the training augmentations (read by
`prepare`; `data.augment` by the training stages)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from compress.config.section import Section


class NearDuplicateParams(Section):
    # pairs of a training image and a validation or test image within this many bits of their
    # 64-bit perceptual hashes are reported (10: resized and re-encoded copies, and most
    # one-pixel shifts, of detailed pictures; unrelated pictures are further apart)
    max_distance: int = Field(10, ge=0, le=32)
    # more pairs than this stops prepare; null: report only (the default, because small,
    # low-detail images such as the 8x8 digits hash alike without being copies)
    max_pairs: int | None = Field(None, ge=0)


class AugmentParams(Section):
    crop_padding: int = Field(1, ge=0, le=64)
    horizontal_flip: bool = False


class DataParams(Section):
    section: ClassVar[str] = "data"

    source: Literal["digits", "imagefolder", "cifar10"] = "digits"
    path: str | None = None
    image_size: int | None = Field(None, ge=4, le=1024)  # None: the source's own size
    channels: Literal[1, 3] | None = None
    val_fraction: float = Field(0.1, gt=0.0, lt=0.5)
    test_fraction: float = Field(0.2, gt=0.0, lt=0.5)
    calibration_size: int = Field(300, ge=10, le=100_000)
    class_balance_tolerance: float = Field(0.5, gt=0.0, le=1.0)  # the pool's class shares
    split_false_alarm: float = Field(0.01, gt=0.0, lt=0.5)  # per data set, the split checks
    max_bad_fraction: float = Field(0.01, ge=0.0, lt=1.0)
    min_per_class: int = Field(10, ge=1, le=1_000_000)
    near_duplicates: NearDuplicateParams = Field(default_factory=NearDuplicateParams)
    augment: AugmentParams = Field(default_factory=AugmentParams)
    seed: int = 0

    @model_validator(mode="after")
    def _path_for_local_sources(self) -> DataParams:
        if self.source in ("imagefolder", "cifar10") and not self.path:
            raise ValueError(f"data.path is required when data.source is '{self.source}'")
        return self
