"""End to end on a temporary git + DVC copy of the repository with tiny params: the Prefect
compress flow runs every DVC stage once, a second run (and a plain `dvc repro`) has nothing to
do, outs push to a local remote, and the model-update cycle promotes / refuses / promotes
through the GTO registry. Runs under Prefect's test harness (embedded database)."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import yaml
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType
from prefect.settings import PREFECT_API_URL

from compress.config.evaluate import AcceptanceGate, EvaluateParams
from compress.config.registry import RegistryParams
from compress.core.artifacts import Artifacts
from compress.data.loaders import load_split
from compress.evaluation.benchmark import encode_png
from compress.runtime.contract import read_contract
from compress.steps.evaluate import evaluate
from flows.approval import ask_for_approval, needs_approval
from flows.compress import StageFailed, compress, pipeline_stages
from flows.serve import build_deployment
from flows.update_cycle import update_cycle
from tests.conftest import STAGES, copy_repo, digit_images

DATA = "data/input/digits"  # tracked with `dvc add`, as a team's image folder is


def _run(repo: Path, *command: str) -> subprocess.CompletedProcess:
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, timeout=600)


def _dvc(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return _run(repo, "dvc", *args)


def _edit_params(repo: Path, edit) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    edit(params)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def _tiny_repo(repo: Path) -> None:
    digit_images(repo / DATA)
    _edit_params(repo, _tiny)


def _tiny(params: dict) -> None:
    params["data"] |= {"source": "imagefolder", "path": DATA, "image_size": 16, "channels": 1}
    params["teacher"]["epochs"] = 1
    params["distill"] |= {"epochs": 1, "student": "mobilenet_v2"}  # the layer names below
    params["prune"] |= {"finetune_epochs": 1, "rounds": 1}
    params["quantize"]["qat"]["epochs"] = 1
    # orchestration tests: the default float layers, without the per-layer sensitivity pass
    params["quantize"] |= {"keep_fp32": ["first_conv", "classifier"], "sensitivity": False}
    params["evaluate"] |= {"timed_runs": 5, "warmup_runs": 1, "repeats": 1}
    params["evaluate"]["gate"] = {
        "max_accuracy_drop": 1.0,
        "max_class_drop": 1.0,
        "max_ece_increase": 1.0,
    }
    params["benchmark"] |= {"warmup_runs": 1, "timed_runs": 3}
    params["gate"] = {"min_accuracy": 0.0, "min_class_accuracy": 0.0}
    # the size objective alone decides in these tests: never "more accurate", always within
    # tolerance; no approval asked unless a test asks for it
    params["registry"] |= {"tolerance": 1.0, "min_gain": 1.0, "approval": "never"}


def _git_repo(repo: Path, remote: Path) -> None:
    for command in (
        ("git", "config", "user.email", "ci@example.com"),
        ("git", "config", "user.name", "ci"),
        ("dvc", "remote", "modify", "--local", "local", "url", str(remote)),
        ("dvc", "add", "--quiet", DATA),
        ("git", "add", "--all"),
        ("git", "commit", "-qm", "init"),
    ):
        assert _run(repo, *command).returncode == 0, command


@pytest.fixture(scope="module")
def pipeline(harness, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    """A tiny-params repository after one run of the compress flow."""
    root = tmp_path_factory.mktemp("pipeline")
    repo = copy_repo(root / "repo")
    _tiny_repo(repo)
    _git_repo(repo, root / "remote")
    return repo, compress(repo=str(repo))


def test_compress_flow_runs_each_stage_once_in_dag_order(pipeline) -> None:
    repo, runs = pipeline
    artifacts = Artifacts(repo)
    assert pipeline_stages(repo) == STAGES
    assert [run["stage"] for run in runs] == STAGES
    assert all(run["ran"] and run["seconds"] > 0 for run in runs)
    assert json.loads(artifacts.teacher_gate.read_text())["passed"]
    assert artifacts.teacher_onnx.stat().st_size > 1_000_000
    shipped = json.loads(artifacts.shipped_json.read_text())
    assert shipped["candidate"] == "quantized"  # smallest, and the lax gate lets everything pass
    assert shipped["source_file"] == "models/quantized.onnx"  # relative: the record travels
    metrics = json.loads(artifacts.evaluate_metrics.read_text())["candidates"]
    for figures in metrics.values():
        assert figures["size_bytes"] == (repo / figures["file"]).stat().st_size
        assert figures["runtimes"]["openvino"]["agreement_with_onnxruntime"] >= 0.99
        for stats in figures["latency"].values():
            assert 0 < stats["p50_ms"] <= stats["p95_ms"] <= stats["p99_ms"]
    session = ort.InferenceSession(str(artifacts.shipped_onnx), providers=["CPUExecutionProvider"])
    prepared = artifacts.prepared_dir  # read with numpy alone: the shards are plain .npy files
    index = json.loads((prepared / "test.index.json").read_text())
    pixels = np.concatenate([np.load(prepared / shard["file"]) for shard in index["shards"]])
    test_labels = np.load(prepared / index["labels"])
    meta = json.loads((prepared / "meta.json").read_text())
    unit = pixels.astype(np.float32) / (255.0 if pixels.dtype == np.uint8 else 1.0)
    images = (unit - np.float32(meta["mean"][0])) / np.float32(meta["std"][0])
    predictions = session.run(None, {"input": images})[0].argmax(axis=1)
    assert np.mean(predictions == test_labels) == shipped["metrics"]["accuracy"]
    assert _dvc(repo, "metrics", "show").returncode == 0
    assert _dvc(repo, "plots", "show", "--json").returncode == 0


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_predict_reproduces_evaluates_accuracy_on_the_test_split_files(
    pipeline, tmp_path: Path, runtime: str
) -> None:
    """The test split's images written as PNG decode to exactly the prepared arrays (they came
    from 8-bit files through the same decoder), so predict's accuracy is evaluate's, exactly."""
    repo, _ = pipeline
    artifacts = Artifacts(repo)
    images, labels = load_split("test", artifacts.prepared_dir)
    for index, (image, label) in enumerate(zip(images, labels, strict=True)):
        (tmp_path / f"{index:04d}_{int(label)}.png").write_bytes(encode_png(image.numpy()))
    done = _run(
        repo,
        "compress",
        "predict",
        "models/shipped.onnx",
        str(tmp_path),
        "--top-k",
        "1",
        "--format",
        "csv",
        "--runtime",
        runtime,
    )
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert len(rows) == len(labels)
    hits = [row["class_1"] == Path(row["file"]).stem.split("_")[1] for row in rows]
    shipped = json.loads(artifacts.shipped_json.read_text())
    assert np.mean(hits) == shipped["metrics"]["runtimes"][runtime]["accuracy"]
    assert artifacts.shipped_ir.is_file() and artifacts.shipped_ir.with_suffix(".bin").is_file()
    assert read_contract(artifacts.shipped_onnx).provenance["params_sha256"]


def _kill_after(repo: Path, stage: str, marker: str) -> bool:
    """Start `dvc repro <stage>`, SIGKILL its whole process group once `marker` is logged.
    True when the kill landed mid-stage (the marker came before the run ended)."""
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    process = subprocess.Popen(
        ["dvc", "repro", stage],
        cwd=repo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    for line in process.stdout:
        if marker in line:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            return True
    process.wait()
    return False


def _outs(repo: Path) -> dict[str, str]:
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    return {
        out["path"]: out["md5"]
        for name, stage in lock.items()
        if name != "evaluate"
        for out in stage.get("outs", [])
        if out["path"].startswith(("models/", "data/"))  # metrics hold timings
    }


@pytest.mark.slow  # a second whole pipeline, about 5.5 min on 2 cores
def test_kill_9_mid_stage_then_repro_completes_and_reproduces(pipeline, tmp_path: Path) -> None:
    """Kill every training stage right after its first epoch; no out of a killed run is taken
    as valid, `dvc repro` completes, every model is bit-identical to the clean run's, and
    evaluate gives the same intervals and decision."""
    clean_repo, _ = pipeline
    repo = copy_repo(tmp_path / "repo")
    _tiny_repo(repo)
    _git_repo(repo, tmp_path / "remote")
    for stage, marker, out in (
        ("baseline", "[teacher] epoch 1/", "models/teacher.pt"),
        ("distill", "[distill] epoch 1/", "models/student.pt"),
        ("prune", "[prune round 1] epoch 1/", "models/pruned.pt"),
        ("quantize", "[QAT] epoch 1/", "models/quantized.pt"),
    ):
        assert _kill_after(repo, stage, marker), f"{stage} ended before it could be killed"
        assert not (repo / out).exists(), f"the killed {stage} left {out} behind"
        status = _dvc(repo, "status", stage)
        assert stage in status.stdout, status.stdout  # DVC does not consider it up to date
    finished = _dvc(repo, "repro")
    assert finished.returncode == 0, finished.stderr
    assert "up to date" in _dvc(repo, "status").stdout
    assert _outs(repo) == _outs(clean_repo)  # two runs, identical model files
    assert _decision(repo) == _decision(clean_repo)  # and the same intervals and decision


def _decision(repo: Path) -> tuple[dict, str]:
    """What evaluate decides from: accuracies and drop intervals (not timings), and its pick."""
    artifacts = Artifacts(repo)
    candidates = json.loads(artifacts.evaluate_metrics.read_text())["candidates"]
    figures = {
        name: (c["accuracy"], c.get("drop_interval"), c.get("class_drop_intervals"))
        for name, c in candidates.items()
    }
    return figures, json.loads(artifacts.shipped_json.read_text())["candidate"]


def test_second_run_skips_every_stage(pipeline) -> None:
    repo, _ = pipeline
    again = compress(repo=str(repo))
    assert [run["stage"] for run in again] == STAGES
    assert not any(run["ran"] for run in again)
    plain = _dvc(repo, "repro")
    assert plain.returncode == 0, plain.stderr
    assert "Running stage" not in plain.stdout
    assert "Data and pipelines are up to date" in plain.stdout


def test_outs_push_to_the_remote(pipeline) -> None:
    repo, _ = pipeline
    pushed = _dvc(repo, "push")
    assert pushed.returncode == 0, pushed.stderr
    remote = repo.parent / "remote"
    assert sum(1 for path in remote.rglob("*") if path.is_file()) >= 16


def _commit_params(repo: Path, edit) -> None:
    """Change params.yaml and commit it, as a team does before a cycle (which refuses
    uncommitted code or params)."""
    _edit_params(repo, edit)
    assert _run(repo, "git", "commit", "-qam", "params").returncode == 0


def _answer_when_paused(*answer: str) -> threading.Thread:
    """A thread that waits for a flow run paused for approval and answers it with
    `compress approve <id> ...` in a separate process, as a person at a terminal would."""
    api = PREFECT_API_URL.value()

    def answer_it() -> None:
        paused = FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))
        )
        for _ in range(600):
            with get_client(sync_client=True) as client:
                runs = client.read_flow_runs(flow_run_filter=paused)
            if runs:
                command = [sys.executable, "-m", "compress.commands.cli", "approve"]
                done = subprocess.run(
                    [*command, str(runs[0].id), *answer],
                    env=os.environ | {"PREFECT_API_URL": api},
                    capture_output=True,
                    text=True,
                )
                assert done.returncode == 0, done.stderr
                return
            time.sleep(1)

    thread = threading.Thread(target=answer_it, daemon=True)
    thread.start()
    return thread


def test_update_cycle_promotes_refuses_promotes_and_rolls_back(pipeline) -> None:
    repo, _ = pipeline
    # Uncommitted code or params: refused before any work, the files named.
    _edit_params(repo, lambda p: p["evaluate"].update(timed_runs=6))
    with pytest.raises(StageFailed, match=r"uncommitted changes to code or params \(params.yaml"):
        update_cycle(repo=str(repo))
    assert _run(repo, "git", "checkout", "params.yaml").returncode == 0

    first = update_cycle(repo=str(repo))
    assert (first["action"], first["clause"]) == ("promoted", "first_model"), first
    committed = _run(repo, "git", "show", "--name-only", "--format=", "HEAD").stdout.split()
    assert {"dvc.lock", "models/shipped.json", "reports/model_card.md"} <= set(committed)
    assert not [f for f in committed if f.startswith(("compress/", "flows/", "stages/"))]
    assert first["code_commit"] != first["promotion_commit"]

    # More layers kept in float: a larger INT8 file, so not better on `smallest`.
    _commit_params(
        repo,
        lambda p: p["quantize"].update(
            keep_fp32=["first_conv", "classifier", "features.1.conv.0.0", "features.2.conv.0.0"]
        ),
    )
    worse = update_cycle(repo=str(repo))
    assert (worse["action"], worse["clause"]) == ("kept", "non_inferior_not_better"), worse
    assert worse["figures"]["new"]["size_bytes"] > worse["figures"]["production"]["size_bytes"]

    # Every layer in INT8: smaller than production, so the policy promotes; approval asked
    # (`always`) and given from the command line, the approver recorded.
    _commit_params(
        repo,
        lambda p: (
            p["quantize"].update(keep_fp32=[]),
            p["registry"].update(approval="always", approval_timeout_hours=0.05),
        ),
    )
    answering = _answer_when_paused("--approver", "alice", "--reason", "smaller, checked")
    better = update_cycle(repo=str(repo))
    answering.join(timeout=60)
    assert better["action"] == "promoted", better
    assert better["approval"] == {
        "answer": "approved",
        "approver": "alice",
        "reason": "smaller, checked",
        "recommended": "promoted",
    }
    assert better["production_version"] == first["version"]

    shown = _run(repo, "gto", "show", "--json")
    assert shown.returncode == 0, shown.stderr
    registry = json.loads(shown.stdout)
    assert registry["shipped-model"]["version"] == better["version"]
    assert registry["shipped-model"]["stage"]["prod"] == better["version"]
    versions = json.loads(_run(repo, "gto", "show", "shipped-model", "--json").stdout)
    assert {v["version"] for v in versions} == {first["version"], better["version"]}  # fallback
    unchanged = update_cycle(repo=str(repo))
    assert (unchanged["action"], unchanged["reason"]) == ("kept", "nothing changed")

    # Rollback in one command: production back to the first version, retrievable by dvc get.
    rolled = _run(repo, sys.executable, "-m", "compress.commands.cli", "rollback")
    assert rolled.returncode == 0, rolled.stderr
    registry = json.loads(_run(repo, "gto", "show", "--json").stdout)
    assert registry["shipped-model"]["stage"]["prod"] == first["version"]
    first_model = repo.parent / "first.onnx"
    fetched = _dvc(
        repo,
        "get",
        ".",
        "models/shipped.onnx",
        "--rev",
        first["version_tag"],
        "-o",
        str(first_model),
    )
    assert fetched.returncode == 0, fetched.stderr
    decisions = [
        json.loads(line) for line in Artifacts(repo).decisions_log.read_text().splitlines()
    ]
    assert [d["action"] for d in decisions] == [
        "promoted",
        "kept",
        "promoted",
        "kept",
        "rolled_back",
    ]
    assert decisions[-1]["version"] == first["version"]


def _evaluated_copy(repo: Path, folder: Path, relabel_test: bool) -> dict:
    """evaluate (objective most_accurate, a gate everything passes) on a copy of the
    pipeline's data and models, the test split's labels shifted by one class on request."""
    for name in ("data", "models"):
        shutil.copytree(repo / name, folder / name)
    shutil.copy(repo / "params.yaml", folder / "params.yaml")  # its hash is the provenance
    if relabel_test:
        labels_file = folder / "data/prepared/test.labels.npy"
        np.save(labels_file, (np.load(labels_file) + 1) % 10)
    params = EvaluateParams(
        objective="most_accurate",
        gate=AcceptanceGate(max_accuracy_drop=1.0, max_class_drop=1.0, max_ece_increase=1.0),
        batch_sizes=[1],
        warmup_runs=1,
        timed_runs=3,
        repeats=1,
        runtimes=["onnxruntime"],
    )
    return evaluate(params, Artifacts(folder))


def test_test_labels_cannot_change_which_candidate_is_chosen(pipeline, tmp_path: Path) -> None:
    """Every test label changed on purpose: the test figures change, the choice does not
    (it is made on validation); the old rule, most accurate on test, would follow them."""
    repo, _ = pipeline
    honest = _evaluated_copy(repo, tmp_path / "honest", relabel_test=False)
    relabelled = _evaluated_copy(repo, tmp_path / "relabelled", relabel_test=True)
    assert relabelled["decision"]["chosen"] == honest["decision"]["chosen"] is not None
    chosen_with = ("accuracy", "per_class_accuracy", "ece", "drop_interval")  # not the timings
    for name, figures in honest["candidates"].items():
        changed = relabelled["candidates"][name]["selection"]
        assert [changed.get(k) for k in chosen_with] == [
            figures["selection"].get(k) for k in chosen_with
        ]
    teacher = [run["candidates"]["teacher_fp32"] for run in (honest, relabelled)]
    assert teacher[1]["accuracy"] < teacher[0]["accuracy"] - 0.2  # the test figures did move


@flow
def _approval_only(timeout_hours: float) -> dict:
    """The cycle's approval step alone, on a decision the policy would promote."""
    decision = {
        "action": "promoted",
        "clause": "more_accurate",
        "reason": "+0.3 pt",
        "uncertain": True,
    }
    settings = RegistryParams(approval="when_uncertain", approval_timeout_hours=timeout_hours)
    assert needs_approval(decision, settings)
    return ask_for_approval(decision, settings)


def test_rejected_or_unanswered_approval_keeps_production(harness) -> None:
    answering = _answer_when_paused("--reject", "--approver", "bob", "--reason", "too close")
    rejected = _approval_only(0.05)
    answering.join(timeout=60)
    assert rejected["action"] == "kept", rejected
    assert rejected["approval"] | {"recommended": "promoted"} == {
        "answer": "rejected",
        "approver": "bob",
        "reason": "too close",
        "recommended": "promoted",
    }
    unanswered = _approval_only(0.001)  # 3.6 s and nobody answers
    assert unanswered["action"] == "kept"
    assert unanswered["approval"] == {"answer": "timeout", "recommended": "promoted"}


def test_params_overrides_run_as_an_experiment_not_in_the_users_file(pipeline) -> None:
    repo, _ = pipeline
    before = (repo / "params.yaml").read_text()
    runs = compress(repo=str(repo), params={"evaluate.objective": "fastest"})
    assert (repo / "params.yaml").read_text() == before
    shown = _dvc(repo, "exp", "show", "--json")
    assert shown.returncode == 0, shown.stderr
    assert runs[0]["experiment"] in shown.stdout


def test_added_images_and_a_new_teacher_file_make_their_stages_stale(pipeline) -> None:
    """data/input/ and models/input/ are deps: DVC sees a changed file, not just a param."""
    repo, _ = pipeline
    image = next((repo / DATA / "3").glob("*.png"))
    shutil.copy(image, image.with_name("copy.png"))
    (repo / "models/input/teacher.pt").write_bytes(b"a retrained teacher")
    status = _dvc(repo, "status").stdout
    (repo / "models/input/teacher.pt").unlink()
    image.with_name("copy.png").unlink()
    assert "prepare:" in status and "baseline:" in status
    assert "modified:           data/input" in status
    assert "modified:           models/input" in status
    assert "Data and pipelines are up to date" in _dvc(repo, "status").stdout


def test_a_new_teacher_or_new_prepared_data_makes_the_teacher_outputs_stale(pipeline) -> None:
    """The stored teacher outputs are a DVC out whose deps are the teacher and the prepared
    splits: either changing is what reruns the stage (and distill, prune, quantize after it)."""
    repo, _ = pipeline
    for changed, dep in (
        ("models/teacher.pt", "models/teacher.pt"),
        ("data/prepared/train.labels.npy", "data/prepared"),
    ):
        path = repo / changed
        original = path.read_bytes()
        path.unlink()  # not through a link into the cache
        path.write_bytes(original + b"\0")
        status = json.loads(_dvc(repo, "status", "--json").stdout)
        path.unlink()
        path.write_bytes(original)
        assert {"changed deps": {dep: "modified"}} in status["teacher_outputs"], status
    params_before = (repo / "params.yaml").read_text()
    _edit_params(repo, lambda p: p["data"]["augment"].update(crop_padding=2))  # other views
    status = json.loads(_dvc(repo, "status", "--json").stdout)
    (repo / "params.yaml").write_text(params_before)
    changed = [entry["changed deps"] for entry in status["teacher_outputs"]]
    assert {"params.yaml": {"data.augment": "modified"}} in changed, status
    assert "Data and pipelines are up to date" in _dvc(repo, "status").stdout


def test_failed_data_check_fails_the_flow_without_retries(harness, tmp_path: Path) -> None:
    repo = copy_repo(tmp_path / "repo")
    _edit_params(repo, lambda p: p["data"].update(class_balance_tolerance=0.001))
    with pytest.raises(StageFailed, match="class balance"):
        compress(repo=str(repo), until="prepare")
    with get_client(sync_client=True) as client:
        runs = [run for run in client.read_task_runs() if run.name == "prepare"]
    failed = [run for run in runs if run.state and run.state.is_failed()]
    assert failed and all(run.run_count == 1 for run in failed)


def test_failed_teacher_gate_stops_the_pipeline(tmp_path: Path) -> None:
    repo = copy_repo(tmp_path / "repo")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["teacher"]["epochs"] = 0
    params["benchmark"] |= {"warmup_runs": 0, "timed_runs": 3, "batch_sizes": [1]}
    params["gate"]["min_accuracy"] = 0.99
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    result = _dvc(repo, "repro")
    assert result.returncode != 0
    assert "The teacher is too weak to distill from: test accuracy" in result.stderr
    assert json.loads(Artifacts(repo).teacher_gate.read_text())["passed"] is False


def test_deployment_has_the_schedule_and_concurrency_limit_from_params(tmp_path: Path) -> None:
    repo = copy_repo(tmp_path / "repo")
    _edit_params(
        repo, lambda p: p["registry"].update(schedule="30 4 * * 2", timezone="Europe/Paris")
    )
    deployment = build_deployment(repo)
    schedule = deployment.schedules[0].schedule
    assert (schedule.cron, schedule.timezone) == ("30 4 * * 2", "Europe/Paris")
    assert deployment.concurrency_limit == 1
    assert deployment.concurrency_options.collision_strategy == "ENQUEUE"
    assert deployment.parameters == {"repo": str(repo)}
