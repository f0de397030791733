"""Where a figure was measured: INT8 accuracy and speed depend on the CPU's instruction sets
(AVX2 has no INT8 dot product; AVX-512 VNNI and AMX do) and on the runtimes' versions."""

from __future__ import annotations

import os
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

INSTRUCTION_SETS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "neon", "asimddp")
CPUINFO = Path("/proc/cpuinfo")


def _cpuinfo_field(names: tuple[str, ...]) -> str:
    if not CPUINFO.is_file():
        return ""
    for line in CPUINFO.read_text().splitlines():
        key, _, value = line.partition(":")
        if key.strip() in names:
            return value.strip()
    return ""


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def machine_info() -> dict:
    """CPU model, the instruction sets that matter for INT8, cores and runtime versions."""
    flags = set(_cpuinfo_field(("flags", "Features")).split())
    return {
        "cpu": _cpuinfo_field(("model name",)) or platform.processor() or platform.machine(),
        "instruction_sets": [name for name in INSTRUCTION_SETS if name in flags],
        "cores": os.cpu_count(),
        "onnxruntime": _version("onnxruntime"),
        "openvino": _version("openvino"),
        "python": platform.python_version(),
    }
