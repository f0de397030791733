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
import onnx
import onnxruntime as ort
import pytest
import yaml
from onnx import numpy_helper
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
from tests.conftest import STAGES
from tests.repos import (
    DATA,
    commit_params,
    copy_repo,
    copy_snapshot,
    dvc,
    edit_params,
    run,
)


@pytest.fixture(scope="module")
def pipeline(
    tiny_pipeline_snapshot, harness, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, list[dict]]:
    """A tiny-params repository after one run of the compress flow (a copy of the session's
    snapshot, which this module's cycles and edits leave as it was)."""
    snapshot, runs = tiny_pipeline_snapshot
    return copy_snapshot(snapshot, tmp_path_factory.mktemp("pipeline")), runs


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
    for name, figures in metrics.items():
        assert figures["size_bytes"] == (repo / figures["file"]).stat().st_size
        # float files: the two runtimes differ by summation order only. INT8 files: their
        # integer kernels round differently on CPUs without VNNI, and these one-epoch models'
        # predictions rest on near-ties (0.989 on CI's AVX2 machine, 1.0 on AVX-512 VNNI);
        # test_quantize compares the INT8 logits themselves.
        agreement = figures["runtimes"]["openvino"]["agreement_with_onnxruntime"]
        assert agreement >= (0.95 if name in ("teacher_int8", "quantized") else 0.99), name
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
    assert dvc(repo, "metrics", "show").returncode == 0
    assert dvc(repo, "plots", "show", "--json").returncode == 0


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
    done = run(
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
    """Start `dvc repro --force --single-item <stage>`, SIGKILL its whole process group once
    `marker` is logged. True when the kill landed mid-stage (the marker came before the run
    ended)."""
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    process = subprocess.Popen(
        ["dvc", "repro", "--force", "--single-item", stage],
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


@pytest.mark.slow  # about 1.5 min on 2 cores: distill and quantize, killed and run again
def test_kill_9_mid_stage_then_repro_completes_and_reproduces(
    tiny_pipeline_snapshot, tmp_path: Path
) -> None:
    """In a copy of the clean run, kill QAT and then distillation (two models, the teacher's
    stored outputs read) right after their first epoch: no out of a killed run is taken as
    valid, `dvc repro` completes, every model is bit-identical to the clean run's, and
    evaluate gives the same intervals and decision."""
    clean_repo, _ = tiny_pipeline_snapshot
    repo = copy_snapshot(clean_repo, tmp_path)
    for stage, marker, out in (
        ("quantize", "[QAT] epoch 1/", "models/quantized.pt"),
        ("distill", "[distill] epoch 1/", "models/student.pt"),
    ):
        assert _kill_after(repo, stage, marker), f"{stage} ended before it could be killed"
        assert not (repo / out).exists(), f"the killed {stage} left {out} behind"
        status = dvc(repo, "status", stage)
        assert stage in status.stdout, status.stdout  # DVC does not consider it up to date
    finished = dvc(repo, "repro")
    assert finished.returncode == 0, finished.stderr
    assert (
        "Running stage 'distill'" in finished.stdout
        and "Running stage 'quantize'" in finished.stdout
    )
    assert "up to date" in dvc(repo, "status").stdout
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
    plain = dvc(repo, "repro")
    assert plain.returncode == 0, plain.stderr
    assert "Running stage" not in plain.stdout
    assert "Data and pipelines are up to date" in plain.stdout


def test_outs_push_to_the_remote(pipeline) -> None:
    repo, _ = pipeline
    pushed = dvc(repo, "push")
    assert pushed.returncode == 0, pushed.stderr
    remote = repo.parent / "remote"
    assert sum(1 for path in remote.rglob("*") if path.is_file()) >= 16


def _answer_when_paused(*answer: str, before=None) -> threading.Thread:
    """A thread that waits for a flow run paused for approval and answers it with
    `compress approve <id> ...` in a separate process, as a person at a terminal would
    (after calling `before`, when given: what else happens during the pause)."""
    api = PREFECT_API_URL.value()

    def answer_it() -> None:
        paused = FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))
        )
        for _ in range(600):
            with get_client(sync_client=True) as client:
                runs = client.read_flow_runs(flow_run_filter=paused)
            if runs:
                if before:
                    before()
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


def _in_stage(repo: Path, step: str) -> str | None:
    """The version `gto show` names in prod under both of its sorts (they must agree: one
    version holds the stage), printed after each step of the month."""
    holders = {}
    for sort in ("timestamp", "semver"):
        shown = run(repo, "gto", "show", "--sort", sort, "--json")
        assert shown.returncode == 0, shown.stderr
        holders[sort] = json.loads(shown.stdout).get("shipped-model", {}).get("stage", {})
    print(f"\n--- gto show after: {step}\n{run(repo, 'gto', 'show').stdout}")
    assert holders["timestamp"] == holders["semver"], holders
    return holders["timestamp"].get("prod")


def _cycle(repo: Path, step: str, answer: threading.Thread | None = None) -> dict:
    decision = update_cycle(repo=str(repo))
    if answer:
        answer.join(timeout=120)
    print(f"\n=== {step}: {decision['action']} ({decision['clause']}): {decision['reason']}")
    return decision


def _rollback(repo: Path, *to: str) -> subprocess.CompletedProcess:
    rolled = run(repo, sys.executable, "-m", "compress.commands.cli", "rollback", *to)
    assert rolled.returncode == 0, rolled.stderr
    print(rolled.stdout)
    return rolled


def _head_and_tags(repo: Path) -> tuple[str, str]:
    return run(repo, "git", "rev-parse", "HEAD").stdout, run(repo, "git", "tag").stdout


FLOAT_LAYERS = ["first_conv", "classifier", "features.1.conv.0.0", "features.2.conv.0.0"]


def test_a_month_of_cycles_keeps_one_true_registry(pipeline) -> None:
    """Promotions, a failed push, rollbacks back and forward, a rejection and an approval
    pause during which HEAD moved, as a team lives them over weeks: after every step exactly
    one version holds prod (both of GTO's sorts agree), and what a person rolled back or
    rejected stays out. The size objective decides (fewer layers kept in float: a smaller
    INT8 file); registry.min_objective_gain 0 lets a layer's worth of bytes count (the
    margin has its own table in test_evaluate)."""
    repo, _ = pipeline
    log = Artifacts(repo).decisions_log
    # Uncommitted code or params: refused before any work, the files named.
    edit_params(repo, lambda p: p["evaluate"].update(timed_runs=6))
    with pytest.raises(StageFailed, match=r"uncommitted changes to code or params \(params.yaml"):
        update_cycle(repo=str(repo))
    assert run(repo, "git", "checkout", "params.yaml").returncode == 0

    # The first model over a budget: kept, naming the budget; nothing registered.
    commit_params(repo, lambda p: p["registry"].update(max_size_bytes=1000, min_objective_gain=0.0))
    over = _cycle(repo, "first model over budget")
    assert (over["action"], over["clause"]) == ("kept", "over_budget"), over
    assert "registry.max_size_bytes 1000" in over["reason"]
    assert _in_stage(repo, "first model over budget") is None

    # v0.0.1, with a file a person staged that is not the pipeline's.
    commit_params(
        repo,
        lambda p: (
            p["registry"].update(max_size_bytes=None),
            p["quantize"].update(keep_fp32=FLOAT_LAYERS),
        ),
    )
    (repo / "notes.txt").write_text("a person's work in progress\n")
    assert run(repo, "git", "add", "notes.txt").returncode == 0
    first = _cycle(repo, "v0.0.1")
    assert (first["action"], first["clause"]) == ("promoted", "first_model"), first
    assert first["version"] == "v0.0.1"
    tag = first["version_tag"]
    committed = run(repo, "git", "diff", "--name-only", first["code_commit"], tag).stdout.split()
    history = run(repo, "git", "log", "--stat", "-4", "--format=%h %s").stdout
    assert {"dvc.lock", "models/shipped.json", "registry/decisions.jsonl"} <= set(committed), (
        history
    )
    assert "notes.txt" not in committed and "params.yaml" not in committed
    assert "A  notes.txt" in run(repo, "git", "status", "--porcelain").stdout  # still staged
    tagged_log = run(repo, "git", "show", f"{tag}:registry/decisions.jsonl").stdout
    assert json.loads(tagged_log.splitlines()[-1])["version"] == "v0.0.1"
    assert first["code_commit"] == run(repo, "git", "rev-parse", "HEAD~1").stdout.strip()
    assert run(repo, "git", "rm", "-q", "--cached", "notes.txt").returncode == 0
    assert _in_stage(repo, "v0.0.1") == "v0.0.1"

    # A float layer fewer, while the remote refuses writes (its folder would be under a file),
    # the cycle run as a person runs it: nothing tagged, no commit, prod unchanged, the error
    # recorded, exit 1 by the errno table (ENOTDIR is the user's).
    commit_params(repo, lambda p: p["quantize"].update(keep_fp32=FLOAT_LAYERS[:3]))
    remote = repo.parent / "remote"
    (repo.parent / "a-file").write_text("")
    dvc(repo, "remote", "modify", "--local", "local", "url", str(repo.parent / "a-file/remote"))
    before = _head_and_tags(repo)
    os.environ["PREFECT_API_URL"] = PREFECT_API_URL.value()  # the harness's server
    try:
        failed = run(repo, sys.executable, "-m", "flows.update_cycle")
    finally:
        del os.environ["PREFECT_API_URL"]
    dvc(repo, "remote", "modify", "--local", "local", "url", str(remote))
    assert failed.returncode == 1, failed.stderr[-3000:]
    assert "`dvc push` failed" in failed.stderr and "Not a directory" in failed.stderr
    assert _head_and_tags(repo) == before
    recorded = json.loads(log.read_text().splitlines()[-1])
    assert (recorded["action"], recorded["clause"]) == ("kept", "promotion_failed")
    assert "Not a directory" in recorded["reason"]
    assert _in_stage(repo, "dvc push refused") == "v0.0.1"
    second = _cycle(repo, "v0.0.2, the remote writable again")
    assert (second["action"], second["version"]) == ("promoted", "v0.0.2"), second
    assert second["stages_run"] == [] and second["production_version"] == "v0.0.1"
    assert _in_stage(repo, "v0.0.2") == "v0.0.2"

    commit_params(repo, lambda p: p["quantize"].update(keep_fp32=FLOAT_LAYERS[:2]))
    third = _cycle(repo, "v0.0.3")
    assert (third["action"], third["version"]) == ("promoted", "v0.0.3"), third
    assert _in_stage(repo, "v0.0.3") == "v0.0.3"

    # Rollback to v0.0.1: the only holder; the next cycle, with nothing changed, keeps it.
    rolled = _rollback(repo, "--to", "v0.0.1")
    assert "The workspace is left as it is" in rolled.stdout
    assert _in_stage(repo, "rollback --to v0.0.1") == "v0.0.1"
    after = _cycle(repo, "nothing changed after the rollback")
    assert (after["action"], after["clause"]) == ("kept", "rolled_back_before"), after
    assert "rolled back from production (prod moved to v0.0.1 (was v0.0.3))" in after["reason"]
    assert after["stages_run"] == [] and _in_stage(repo, "kept after rollback") == "v0.0.1"

    # Every layer in INT8, approval asked: a person commits during the pause, then approves:
    # refused (the model's provenance would be false). Asked again, a person rejects it:
    # kept, and the next cycle keeps it without asking.
    commit_params(
        repo,
        lambda p: (
            p["quantize"].update(keep_fp32=[]),
            p["registry"].update(approval="always", approval_timeout_hours=0.02),
        ),
    )
    meanwhile = ("git", "commit", "-q", "--allow-empty", "-m", "meanwhile")
    answering = _answer_when_paused("--approver", "alice", before=lambda: run(repo, *meanwhile))
    moved = _cycle(repo, "HEAD moved during the approval pause", answering)
    assert (moved["action"], moved["clause"]) == ("kept", "head_moved"), moved
    assert _in_stage(repo, "HEAD moved") == "v0.0.1"
    answering = _answer_when_paused("--reject", "--approver", "bob", "--reason", "odd errors")
    rejected = _cycle(repo, "rejected", answering)
    assert (rejected["action"], rejected["approval"]["answer"]) == ("kept", "rejected")
    again = _cycle(repo, "nothing changed after the rejection")
    assert (again["action"], again["clause"]) == ("kept", "rejected_before"), again
    assert "approval" not in again and "rejected by bob (odd errors)" in again["reason"]

    # Another recipe (only the classifier in float): a new model, compared with v0.0.1 (what
    # serves, not the newest tag), promoted as v0.0.4. (New data is test_update_cycle's.)
    commit_params(
        repo,
        lambda p: (
            p["quantize"].update(keep_fp32=["classifier"]),
            p["registry"].update(approval="never"),
        ),
    )
    fourth = _cycle(repo, "v0.0.4 from another recipe")
    assert (fourth["production_version"], fourth["version"]) == ("v0.0.1", "v0.0.4"), fourth
    assert fourth["stages_run"][0] == "quantize" and _in_stage(repo, "v0.0.4") == "v0.0.4"

    # A second rollback (to the version before v0.0.4), then forward again.
    _rollback(repo)
    assert _in_stage(repo, "second rollback") == "v0.0.3"
    _rollback(repo, "--to", "v0.0.4")
    assert _in_stage(repo, "rollback forward --to v0.0.4") == "v0.0.4"
    first_model = repo.parent / "first.onnx"
    fetched = dvc(repo, "get", ".", "models/shipped.onnx", "--rev", tag, "-o", str(first_model))
    assert fetched.returncode == 0, fetched.stderr  # every version stays retrievable
    print("\n" + log.read_text())
    assert [json.loads(line)["clause"] for line in log.read_text().splitlines()] == [
        "over_budget",
        "first_model",
        "promotion_failed",
        "non_inferior_and_better",
        "non_inferior_and_better",
        "rollback",
        "rolled_back_before",
        "head_moved",
        "non_inferior_and_better",  # the policy's clause; a person rejected it
        "rejected_before",
        "non_inferior_and_better",
        "rollback",
        "rollback",
    ]


LAX_GATE = AcceptanceGate(max_accuracy_drop=1.0, max_class_drop=1.0, max_ece_increase=1.0)


def _evaluated_copy(
    repo: Path,
    folder: Path,
    relabel_test: bool,
    gate: AcceptanceGate = LAX_GATE,
    extra: tuple[str, ...] = (),
) -> dict:
    """evaluate (objective most_accurate, by default a gate everything passes) on a copy of
    the pipeline's data and models, the test split's labels shifted by one class on request,
    with `extra` candidates made by `_wrong_model` under models/input/."""
    for name in ("data", "models"):
        shutil.copytree(repo / name, folder / name)
    shutil.copy(repo / "params.yaml", folder / "params.yaml")  # its hash is the provenance
    if relabel_test:
        labels_file = folder / "data/prepared/test.labels.npy"
        np.save(labels_file, (np.load(labels_file) + 1) % 10)
    for name in extra:
        _wrong_model(folder / "models/teacher.onnx", folder / "models/input" / name)
    params = EvaluateParams(
        objective="most_accurate",
        gate=gate,
        extra_candidates=[f"models/input/{name}" for name in extra],
        batch_sizes=[1],
        warmup_runs=1,
        timed_runs=3,
        repeats=1,
        runtimes=["onnxruntime"],
    )
    return evaluate(params, Artifacts(folder))


def _wrong_model(source: Path, target: Path) -> None:
    """A model with its classifier's rows rolled by one: every prediction is the next class,
    a model that runs and answers wrongly."""
    model = onnx.load(str(source))
    for tensor in model.graph.initializer:
        if tensor.dims and tensor.dims[0] == 10 and len(tensor.dims) <= 2:  # 10 digit classes
            values = numpy_helper.to_array(tensor)
            tensor.CopyFrom(numpy_helper.from_array(np.roll(values, 1, axis=0), tensor.name))
    target.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(target))


def test_a_wrong_model_fails_a_real_gate(pipeline, tmp_path: Path) -> None:
    """A real gate (5 pt accuracy, 30 pt observed per class) on the tiny pipeline, with the teacher's
    classifier rolled by one class as an extra candidate: the wrong model fails on validation,
    on accuracy and per class; the teacher's INT8 copy passes and is chosen. (The gate in the
    other tests lets everything pass: one-epoch students are near chance, and they are there
    to test orchestration.)"""
    repo, _ = pipeline
    gate = AcceptanceGate(
        max_accuracy_drop=0.05, max_class_drop=0.3, max_ece_increase=1.0, class_false_alarm=0.0
    )
    result = _evaluated_copy(repo, tmp_path / "wrong", False, gate, extra=("wrong.onnx",))
    decision, candidates = result["decision"], result["candidates"]
    reference = candidates["teacher_fp32"]["selection"]["accuracy"]
    assert candidates["extra:wrong"]["selection"]["accuracy"] < reference - 0.2
    failures = decision["selection_failures"]
    assert {"max_accuracy_drop", "max_class_drop"} <= set(failures["extra:wrong"])
    assert not failures["teacher_int8"], failures
    assert decision["chosen"] == decision["shipped"] == "teacher_int8"


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
    shown = dvc(repo, "exp", "show", "--json")
    assert shown.returncode == 0, shown.stderr
    assert runs[0]["experiment"] in shown.stdout


def test_added_images_and_a_new_teacher_file_make_their_stages_stale(pipeline) -> None:
    """data/input/ and models/input/ are deps: DVC sees a changed file, not just a param."""
    repo, _ = pipeline
    image = next((repo / DATA / "3").glob("*.png"))
    shutil.copy(image, image.with_name("copy.png"))
    (repo / "models/input/teacher.pt").write_bytes(b"a retrained teacher")
    status = dvc(repo, "status").stdout
    (repo / "models/input/teacher.pt").unlink()
    image.with_name("copy.png").unlink()
    assert "prepare:" in status and "baseline:" in status
    assert "modified:           data/input" in status
    assert "modified:           models/input" in status
    assert "Data and pipelines are up to date" in dvc(repo, "status").stdout


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
        status = json.loads(dvc(repo, "status", "--json").stdout)
        path.unlink()
        path.write_bytes(original)
        assert {"changed deps": {dep: "modified"}} in status["teacher_outputs"], status
    params_before = (repo / "params.yaml").read_text()
    edit_params(repo, lambda p: p["data"]["augment"].update(crop_padding=2))  # other views
    status = json.loads(dvc(repo, "status", "--json").stdout)
    (repo / "params.yaml").write_text(params_before)
    changed = [entry["changed deps"] for entry in status["teacher_outputs"]]
    assert {"params.yaml": {"data.augment": "modified"}} in changed, status
    assert "Data and pipelines are up to date" in dvc(repo, "status").stdout


def test_failed_data_check_fails_the_flow_without_retries(harness, tmp_path: Path) -> None:
    repo = copy_repo(tmp_path / "repo")
    edit_params(repo, lambda p: p["data"].update(class_balance_tolerance=0.001))
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
    result = dvc(repo, "repro")
    assert result.returncode != 0
    assert "The teacher is too weak to distill from: validation accuracy" in result.stderr
    assert json.loads(Artifacts(repo).teacher_gate.read_text())["passed"] is False


def test_deployment_has_the_schedule_and_concurrency_limit_from_params(tmp_path: Path) -> None:
    repo = copy_repo(tmp_path / "repo")
    edit_params(
        repo, lambda p: p["registry"].update(schedule="30 4 * * 2", timezone="Europe/Paris")
    )
    deployment = build_deployment(repo)
    schedule = deployment.schedules[0].schedule
    assert (schedule.cron, schedule.timezone) == ("30 4 * * 2", "Europe/Paris")
    assert deployment.concurrency_limit == 1
    assert deployment.concurrency_options.collision_strategy == "ENQUEUE"
    assert deployment.parameters == {"repo": str(repo)}
