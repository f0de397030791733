"""End to end: a temporary copy of the repository runs `dvc repro` with tiny params, a second
`dvc repro` has nothing to do, and the outs push to a local DVC remote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
import yaml

from tests.conftest import copy_repo

STAGES = ("prepare", "baseline", "validate_teacher", "distill", "prune", "quantize", "evaluate")


def _dvc(repo: Path, *args: str) -> subprocess.CompletedProcess:
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(
        ["dvc", *args], cwd=repo, env=env, capture_output=True, text=True, timeout=600
    )


def test_dvc_repro_runs_then_has_nothing_to_do(tmp_path: Path) -> None:
    repo = copy_repo(tmp_path / "repo")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["teacher"]["epochs"] = 1
    params["distill"]["epochs"] = 1
    params["prune"] |= {"finetune_epochs": 1, "rounds": 2}
    params["quantize"]["qat"]["epochs"] = 1
    params["evaluate"] |= {"timed_runs": 5, "warmup_runs": 1, "repeats": 1}
    params["evaluate"]["gate"] = {
        "max_accuracy_drop": 1.0,
        "max_class_drop": 1.0,
        "max_ece_increase": 1.0,
    }
    params["benchmark"] |= {"warmup_runs": 1, "timed_runs": 3}
    params["gate"] = {"min_accuracy": 0.0, "min_class_accuracy": 0.0}
    (repo / "params.yaml").write_text(yaml.safe_dump(params))

    first = _dvc(repo, "repro")
    assert first.returncode == 0, first.stdout + first.stderr
    order = [first.stdout.index(f"Running stage '{stage}'") for stage in STAGES]
    assert order == sorted(order), "stages ran out of DAG order"
    assert json.loads((repo / "metrics/teacher_gate.json").read_text())["passed"]
    assert (repo / "models/teacher.onnx").stat().st_size > 1_000_000
    shipped = json.loads((repo / "models/shipped.json").read_text())
    assert shipped["candidate"] == "quantized"  # smallest, and the lax gate lets everything pass
    metrics = json.loads((repo / "metrics/evaluate.json").read_text())["candidates"]
    for figures in metrics.values():
        assert figures["size_bytes"] == (repo / figures["file"]).stat().st_size
        for stats in figures["latency"].values():
            assert 0 < stats["p50_ms"] <= stats["p95_ms"] <= stats["p99_ms"]
    session = ort.InferenceSession(
        str(repo / "models/shipped.onnx"), providers=["CPUExecutionProvider"]
    )
    test = torch.load(repo / "data/prepared/test.pt", weights_only=True)
    meta = json.loads((repo / "data/prepared/meta.json").read_text())
    images = ((test["images"] - meta["mean"][0]) / meta["std"][0]).numpy()
    predictions = session.run(None, {"input": images})[0].argmax(axis=1)
    assert np.mean(predictions == test["labels"].numpy()) == shipped["metrics"]["accuracy"]
    assert _dvc(repo, "metrics", "show").returncode == 0
    assert _dvc(repo, "plots", "show", "--json").returncode == 0

    second = _dvc(repo, "repro")
    assert second.returncode == 0, second.stderr
    assert "Running stage" not in second.stdout
    assert "Data and pipelines are up to date" in second.stdout

    remote = tmp_path / "remote"
    assert _dvc(repo, "remote", "modify", "--local", "local", "url", str(remote)).returncode == 0
    pushed = _dvc(repo, "push")
    assert pushed.returncode == 0, pushed.stderr
    assert sum(1 for path in remote.rglob("*") if path.is_file()) >= 16


def test_failed_gate_stops_the_pipeline(tmp_path: Path) -> None:
    repo = copy_repo(tmp_path / "repo")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["teacher"]["epochs"] = 0
    params["benchmark"] |= {"warmup_runs": 0, "timed_runs": 3, "batch_sizes": [1]}
    params["gate"]["min_accuracy"] = 0.99
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    result = _dvc(repo, "repro")
    assert result.returncode != 0
    assert "The teacher is too weak to distill from: test accuracy" in result.stderr
    assert json.loads((repo / "metrics/teacher_gate.json").read_text())["passed"] is False
