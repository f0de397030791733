"""Prepared splits as shards: NumPy `.npy` files of at most `SHARD_BYTES` of images each, the
labels in one `.npy` per split, and an index (`<split>.index.json`).

Why `.npy` shards: the format is NumPy's own, documented and readable everywhere (a short
header, then the C-ordered array), so image `i` of a shard sits at a fixed offset. Reading one
image is one `pread`: training keeps an exact global shuffle (the same seed gives the same
batches as an in-memory tensor, at any data size and any number of loader workers) while the
process holds only the batch, never the split. Files are read, not memory-mapped: mapped pages a
pass has touched count in the process's resident memory. Pixels are stored as they come:
uint8 for 8-bit images (a quarter of float32), float32 in [0, 1] for a source whose pixels are
not 8-bit values (digits' 17 grey levels upsampled bilinearly).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from compress.core.errors import PipelineError

SHARD_BYTES = 32 * 2**20
STORED_DTYPES = ("uint8", "float32")
HEADER_READERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}


def index_file(directory: Path, split: str) -> Path:
    return directory / f"{split}.index.json"


class ShardWriter:
    """Append images one at a time; a shard is written when it holds `SHARD_BYTES`, so memory
    stays at one shard whatever the split's size."""

    def __init__(self, directory: Path, split: str, dtype: str, image_shape: tuple[int, ...]):
        if dtype not in STORED_DTYPES:
            raise PipelineError(f"Shards store {' or '.join(STORED_DTYPES)} pixels, not {dtype}.")
        self.directory, self.split = directory, split
        self.dtype, self.image_shape = np.dtype(dtype), tuple(image_shape)
        item_bytes = self.dtype.itemsize * int(np.prod(image_shape))
        self.per_shard = max(1, SHARD_BYTES // item_bytes)
        self.buffer: list[np.ndarray] = []
        self.labels: list[int] = []
        self.shards: list[dict] = []

    def add(self, image: np.ndarray, label: int) -> None:
        if image.shape != self.image_shape or image.dtype != self.dtype:
            raise PipelineError(
                f"Split '{self.split}': image {len(self.labels)} is {image.dtype} "
                f"{image.shape}, the split holds {self.dtype} {self.image_shape}."
            )
        self.buffer.append(image)
        self.labels.append(int(label))
        if len(self.buffer) == self.per_shard:
            self._flush()

    def _flush(self) -> None:
        if not self.buffer:
            return
        name = f"{self.split}-{len(self.shards):05d}.npy"
        np.save(self.directory / name, np.stack(self.buffer))
        self.shards.append({"file": name, "count": len(self.buffer)})
        self.buffer = []

    def close(self, **summary: object) -> dict:
        """Write the last shard, the labels and the index (with `summary`: figures about the
        split computed while it streamed past); return the index."""
        self._flush()
        labels_name = f"{self.split}.labels.npy"
        np.save(self.directory / labels_name, np.asarray(self.labels, dtype=np.int64))
        index = {
            "split": self.split,
            "count": len(self.labels),
            "dtype": self.dtype.name,
            "image_shape": list(self.image_shape),
            "labels": labels_name,
            "shards": self.shards,
            **summary,
        }
        index_file(self.directory, self.split).write_text(json.dumps(index, indent=2) + "\n")
        return index


class ShardReader:
    """Random and sequential access to one split's images; every shard's header and length are
    checked on opening, so a truncated or foreign file is named before any work starts."""

    def __init__(self, directory: Path, split: str):
        self._handles: dict[int, int] = {}
        self._pid = os.getpid()
        file = index_file(directory, split)
        if not file.is_file():
            raise PipelineError(
                f"Prepared split '{file}' not found: run `dvc repro prepare` first."
            )
        index = json.loads(file.read_text())
        self.split, self.count = split, int(index["count"])
        self.dtype = np.dtype(index["dtype"])
        self.image_shape = tuple(index["image_shape"])
        self.item_bytes = self.dtype.itemsize * int(np.prod(self.image_shape))
        self.files = [directory / shard["file"] for shard in index["shards"]]
        self.counts = [int(shard["count"]) for shard in index["shards"]]
        self.offsets = [
            self._check(path, count) for path, count in zip(self.files, self.counts, strict=True)
        ]
        self.starts = np.cumsum([0, *self.counts])
        self.labels = self._labels(directory / index["labels"])

    def _check(self, path: Path, count: int) -> int:
        """The data offset of a shard whose header and size match the index."""
        rebuild = "run `dvc repro prepare --force` (or `dvc checkout data/prepared`) to restore it"
        try:
            with open(path, "rb") as handle:
                version = np.lib.format.read_magic(handle)
                read_header = HEADER_READERS.get(version)
                if read_header is None:
                    raise ValueError(f"npy format version {version}")
                shape, _, dtype = read_header(handle)
                offset = handle.tell()
        except (OSError, ValueError) as error:
            raise PipelineError(f"Shard '{path}' is unreadable ({error}); {rebuild}.") from error
        expected = (count, *self.image_shape)
        size = path.stat().st_size
        if shape != expected or dtype != self.dtype or size != offset + count * self.item_bytes:
            raise PipelineError(
                f"Shard '{path}' is corrupt: it holds {dtype} {shape} in {size} bytes where its "
                f"index says {self.dtype} {expected}; {rebuild}."
            )
        return offset

    def _labels(self, path: Path) -> np.ndarray:
        try:
            labels = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise PipelineError(f"Labels '{path}' are unreadable ({error}).") from error
        if labels.shape != (self.count,):
            raise PipelineError(f"Labels '{path}' hold {labels.shape}, not ({self.count},).")
        return labels

    def __len__(self) -> int:
        return self.count

    def __getstate__(self) -> dict:
        # loader workers open their own file handles
        return {**self.__dict__, "_handles": {}}

    def _handle(self, shard: int) -> int:
        if self._pid != os.getpid():
            self._handles, self._pid = {}, os.getpid()
        if shard not in self._handles:
            self._handles[shard] = os.open(self.files[shard], os.O_RDONLY)
        return self._handles[shard]

    def __getitem__(self, index: int) -> np.ndarray:
        """One image as stored (uint8 or float32), read with a single pread."""
        shard = int(np.searchsorted(self.starts, index, side="right")) - 1
        position = self.offsets[shard] + (index - int(self.starts[shard])) * self.item_bytes
        data = os.pread(self._handle(shard), self.item_bytes, position)
        return np.frombuffer(data, dtype=self.dtype).reshape(self.image_shape)

    def chunks(self, size: int = 1024) -> Iterator[np.ndarray]:
        """The split in order, `size` images at a time: one streaming pass."""
        for path, count, offset in zip(self.files, self.counts, self.offsets, strict=True):
            with open(path, "rb") as handle:
                handle.seek(offset)
                for start in range(0, count, size):
                    take = min(size, count - start)
                    data = handle.read(take * self.item_bytes)
                    yield np.frombuffer(data, dtype=self.dtype).reshape(take, *self.image_shape)

    def read_all(self) -> np.ndarray:
        """The whole split in memory: for the small ones (calibration) and tests."""
        return (
            np.concatenate(list(self.chunks())) if self.count else np.empty((0, *self.image_shape))
        )

    def close(self) -> None:
        for handle in self._handles.values():
            os.close(handle)
        self._handles = {}

    def __del__(self) -> None:
        # loaders are made per stage and per round; each reader's descriptors go with it
        self.close()
