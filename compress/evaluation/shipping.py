"""Shipping the chosen candidate: models/shipped.onnx with its contract and provenance, its
OpenVINO IR, and models/shipped.json written last as the manifest of the shipped files."""

from __future__ import annotations

import json
import subprocess
from dataclasses import asdict, replace
from pathlib import Path

import onnx

from compress.config.evaluate import EvaluateParams
from compress.core import atomic
from compress.core.artifacts import Artifacts, file_digest
from compress.core.errors import PipelineError
from compress.core.lock import lock_hashes
from compress.data.loaders import DatasetInfo
from compress.evaluation.inference import save_openvino_ir
from compress.models.onnx_export import load_onnx, with_contract


def provenance(artifacts: Artifacts) -> dict:
    """What made the shipped model: params file hash, git commit, prepared data hash."""
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"],
        cwd=artifacts.root,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    lock = artifacts.dvc_lock.read_text() if artifacts.dvc_lock.is_file() else None
    data_hash = lock_hashes(lock, "prepare").get(str(Artifacts.outs()["prepared_dir"]))
    return {
        "params_sha256": file_digest(artifacts.params_file, "sha256"),
        "git_commit": commit or None,
        "data_md5": data_hash,
    }


def ship(
    source: Path,
    name: str,
    figures: dict,
    info: DatasetInfo,
    params: EvaluateParams,
    artifacts: Artifacts,
) -> None:
    """models/shipped.onnx: the chosen candidate with its contract and provenance in its
    metadata; its OpenVINO IR when OpenVINO is among the runtimes; shipped.json with the figures
    written last, as the manifest: it holds the md5 of every shipped file, so a kill between
    the files leaves a manifest that does not match them (`check_shipped`), never a model and
    figures that silently disagree."""
    origin = provenance(artifacts)
    contract = replace(info.contract(), provenance=origin)
    model = with_contract(load_onnx(source), contract)
    atomic.write_with(artifacts.shipped_onnx, lambda tmp: onnx.save(model, str(tmp)))
    if "openvino" in params.runtimes:
        atomic.replace_dir(
            artifacts.openvino_dir,
            lambda folder: save_openvino_ir(artifacts.shipped_onnx, folder / "shipped.xml"),
        )
    else:
        atomic.replace_dir(
            artifacts.openvino_dir,
            lambda folder: (folder / "skipped.txt").write_text(
                "openvino is not in evaluate.runtimes\n"
            ),
        )
    atomic.write_json(
        artifacts.shipped_json,
        {
            "candidate": name,
            "source_file": artifacts.relative(source),
            "metrics": figures,
            "objective": params.objective,
            "target_runtime": params.target_runtime,
            "contract": asdict(contract),
            **origin,
            "files": shipped_files(artifacts),
        },
    )


def shipped_files(artifacts: Artifacts) -> dict[str, str]:
    """md5 of the shipped model and its OpenVINO IR files, by path in the repository."""
    folder = artifacts.openvino_dir
    paths = [artifacts.shipped_onnx, *(sorted(folder.iterdir()) if folder.is_dir() else [])]
    return artifacts.digests(paths, "md5")


def check_shipped(artifacts: Artifacts) -> dict:
    """The shipped manifest, once its files are exactly the ones it lists (a run killed while
    shipping leaves them disagreeing: `dvc repro evaluate` ships again)."""
    if not artifacts.shipped_json.is_file():
        raise PipelineError(f"'{artifacts.shipped_json}' not found: run `dvc repro evaluate`.")
    manifest = json.loads(artifacts.shipped_json.read_text())
    if manifest.get("files") != shipped_files(artifacts):
        raise PipelineError(
            f"The shipped files do not match their manifest '{artifacts.shipped_json}' (a run "
            "stopped while shipping?): run `dvc repro evaluate` to ship them again together."
        )
    return manifest
