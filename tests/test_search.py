"""The recipe search: its decisions on the committed evaluation of the default pipeline, bad
`search:` params, and (slow) a real search of 3 tiny trials with 2 process workers on a local
Prefect server, killed and resumed, whose best trial `dvc exp apply` reproduces."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL

from compress.config.search import SearchDimension, SearchParams
from compress.core.artifacts import Artifacts
from compress.search.recipe_search import (
    best_trial,
    distributions,
    open_study,
    overrides,
    trial_model,
    trial_summary,
    trials_front,
)
from flows.pool import torch_threads
from tests.repos import REPO_ROOT, commit_params, copy_repo, copy_snapshot, dvc, edit_params, run

EVALUATION = json.loads((REPO_ROOT / "metrics/evaluate.json").read_text())


def test_a_trial_answers_with_its_best_candidate_that_meets_the_goals() -> None:
    candidates = EVALUATION["candidates"]
    drops = {
        name: candidates[name]["selection"]["drop_interval"]["drop"]
        for name in ("distilled", "pruned", "quantized")
    }
    lax = SearchParams(max_accuracy_drop=1.0)
    smallest = min(("distilled", "pruned", "quantized"), key=lambda n: candidates[n]["size_bytes"])
    model = trial_model(EVALUATION, lax)
    assert (model["candidate"], model["passes"]) == (smallest, True)
    assert model["values"] == [drops[smallest], candidates[smallest]["size_bytes"]]
    assert max(model["violations"]) <= 0

    fastest = trial_model(EVALUATION, SearchParams(max_accuracy_drop=1.0, objective="fastest"))
    assert fastest["values"][1] == min(
        candidates[n]["latency"]["batch_1"]["p50_ms"] for n in ("distilled", "pruned", "quantized")
    )
    impossible = trial_model(EVALUATION, SearchParams(min_x_smaller=10_000))
    assert not impossible["passes"] and impossible["violations"][1] > 0


def test_trials_are_ranked_on_validation_not_test() -> None:
    """The same evaluation with the test figures swapped between two candidates on purpose (the
    one that met the accuracy goal on test now misses it there): the trial's answer does not
    move, because it reads the validation figures."""
    goal = SearchParams(max_accuracy_drop=0.02)
    before = trial_model(EVALUATION, goal)
    swapped = json.loads(json.dumps(EVALUATION))
    for candidate in swapped["candidates"].values():
        candidate["accuracy"] = 0.1
        candidate["vs_teacher"]["accuracy_drop_points"] = 89.0
    after = trial_model(swapped, goal)
    assert (after["candidate"], after["passes"], after["values"]) == (
        before["candidate"],
        before["passes"],
        before["values"],
    )
    assert not any("test" in key for key in after)  # a trial's row carries no test figure


def test_a_trials_record_carries_test_figures_only_from_a_confirmation() -> None:
    """The record a trial publishes for the search: no test figure when its evaluate did not
    confirm on test (every trial), the shipped candidate's test figures when it did."""
    trial = json.loads(json.dumps(EVALUATION))
    trial["decision"]["confirm_on_test"] = False
    summary = trial_summary(trial)
    assert "test" not in summary
    for candidate in summary["candidates"].values():
        assert "accuracy" not in candidate and "accuracy_drop_points" not in candidate["vs_teacher"]
    confirmed = trial_summary(EVALUATION)
    shipped = EVALUATION["decision"]["shipped"]
    assert confirmed["test"] == {
        "candidate": shipped,
        "accuracy": EVALUATION["candidates"][shipped]["accuracy"],
        "accuracy_drop_points": EVALUATION["candidates"][shipped]["vs_teacher"][
            "accuracy_drop_points"
        ],
    }


def test_best_trial_and_front_across_trials() -> None:
    rows = [
        {
            "trial": 0,
            "passes": True,
            "accuracy": 0.99,
            "size_bytes": 900,
            "latency_p50_ms_batch_1": 1.0,
        },
        {
            "trial": 1,
            "passes": True,
            "accuracy": 0.98,
            "size_bytes": 500,
            "latency_p50_ms_batch_1": 2.0,
        },
        {
            "trial": 2,
            "passes": False,
            "accuracy": 0.90,
            "size_bytes": 100,
            "latency_p50_ms_batch_1": 0.5,
        },
        {
            "trial": 3,
            "passes": True,
            "accuracy": 0.97,
            "size_bytes": 950,
            "latency_p50_ms_batch_1": 3.0,
        },
    ]
    assert best_trial(rows, "smallest")["trial"] == 1
    assert best_trial(rows, "fastest")["trial"] == 0
    assert best_trial(rows, "most_accurate")["trial"] == 0
    assert trials_front(rows, "smallest") == [0, 1, 2]  # 3 is beaten by 0 on both
    assert best_trial([rows[2]], "smallest") is None


def test_space_becomes_optuna_distributions_and_lists_round_trip(tmp_path: Path) -> None:
    space = {
        "prune.target_ratio": SearchDimension(low=0.5, high=0.85),
        "prune.rounds": SearchDimension(low=1, high=4),
        "quantize.keep_fp32": SearchDimension(choices=["auto", ["first_conv", "classifier"]]),
    }
    found = distributions(space)
    assert isinstance(found["prune.target_ratio"], FloatDistribution)
    assert isinstance(found["prune.rounds"], IntDistribution)
    assert isinstance(found["quantize.keep_fp32"], CategoricalDistribution)
    study = open_study(tmp_path / "study.journal", "unit", seed=0)
    seen = set()
    for _ in range(12):
        trial = study.ask(found)
        decoded = overrides(trial.params, space)
        assert decoded["quantize.keep_fp32"] in ("auto", ["first_conv", "classifier"])
        assert 0.5 <= decoded["prune.target_ratio"] <= 0.85
        assert isinstance(decoded["prune.rounds"], int)
        seen.add(json.dumps(decoded["quantize.keep_fp32"]))
        trial.set_constraint("max_accuracy_drop", 0.0)
        study.tell(trial, [0.01, 1000.0])
    assert len(seen) == 2
    reopened = open_study(tmp_path / "study.journal", "unit", seed=0)  # resumes from the file
    assert len(reopened.get_trials(states=(optuna.trial.TrialState.COMPLETE,))) == 12


@pytest.mark.parametrize(
    ("change", "culprit"),
    [
        ({"space": {}}, "`search.space` is empty"),
        ({"max_accuracy_drop": 1.5}, "search.max_accuracy_drop"),
        ({"min_x_smaller": 0.5}, "search.min_x_smaller"),
        (
            {"space": {"prune.targt_ratio": {"low": 0.5, "high": 0.8}}},
            "Did you mean 'prune.target_ratio'",
        ),
        ({"space": {"prune.target_ratio": {"low": 0.5, "high": 1.5}}}, "value 1.5 is not valid"),
        ({"space": {"drift.accept": {"choices": [True]}}}, "not a param of a searchable section"),
        ({"objective": "cheapest"}, "search.objective"),
    ],
)
def test_bad_search_params_exit_1_naming_them_before_anything_runs(
    tmp_path: Path, change: dict, culprit: str
) -> None:
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    params["search"] |= change
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    env = os.environ | {"PYTHONPATH": str(REPO_ROOT), "PREFECT_API_URL": "http://127.0.0.1:9/api"}
    result = subprocess.run(
        [sys.executable, "-m", "flows.search"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    assert culprit in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]  # nothing written


SPACE = {  # quantize's params only: a trial reruns quantize and evaluate
    "quantize.calibration_samples": {"choices": [100, 300]},
    "quantize.keep_fp32": {"choices": [["first_conv", "classifier"], []]},
}


@pytest.fixture(scope="module")
def search_repo(tiny_pipeline_snapshot, harness, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's tiny-params repository, its pipeline run once, with a 3-trial space that
    only changes `quantize`, committed (`search:` is no stage's param: the
    pipeline's outs stay up to date)."""
    snapshot, _ = tiny_pipeline_snapshot
    repo = copy_snapshot(snapshot, tmp_path_factory.mktemp("search"))
    search = {"space": SPACE, "max_trials": 3, "workers": 2, "max_accuracy_drop": 1.0}
    commit_params(repo, lambda p: p["search"].update(search))
    assert "Data and pipelines are up to date" in dvc(repo, "status").stdout
    return repo


def _search_process(repo: Path, *command: str) -> subprocess.Popen:
    """`python -m flows.search`, or `command` (e.g. the `compress search` front door)."""
    env = os.environ | {
        "PYTHONPATH": str(REPO_ROOT),
        "PREFECT_API_URL": PREFECT_API_URL.value(),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    log = (repo.parent / "search.log").open("a")
    return subprocess.Popen(
        list(command) or [sys.executable, "-m", "flows.search"],
        cwd=repo,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: the kill takes its workers along
    )


def _complete(repo: Path) -> list[optuna.trial.FrozenTrial]:
    journal = repo / "reports/search/study.journal"
    if not journal.exists():
        return []
    study = optuna.load_study(
        study_name="search",
        storage=optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(journal))
        ),
    )
    return study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))


@pytest.mark.slow  # about 7 min on 2 cores: 3 tiny trials, killed after the first
def test_search_over_a_process_pool_resumes_after_a_kill_and_its_best_trial_applies(
    search_repo: Path,
) -> None:
    repo = search_repo
    first = _search_process(repo)
    deadline = time.monotonic() + 900
    while not _complete(repo) and time.monotonic() < deadline and first.poll() is None:
        time.sleep(5)
    assert _complete(repo), (repo.parent / "search.log").read_text()[-3000:]
    os.killpg(first.pid, signal.SIGKILL)  # the search and its workers, mid-search
    first.wait()
    killed_with = len(_complete(repo))
    assert killed_with < 3

    second = _search_process(repo)
    assert second.wait(timeout=1500) == 0, (repo.parent / "search.log").read_text()[-3000:]
    trials = _complete(repo)
    assert len(trials) == 3  # the budget, counting the trials finished before the kill
    rows = [trial.user_attrs["row"] for trial in trials]
    for row in rows:  # params from the space, decoded (lists stay lists)
        assert row["params"]["quantize.calibration_samples"] in (100, 300)
        assert row["params"]["quantize.keep_fp32"] in (["first_conv", "classifier"], [])
    for row in rows:  # only what the trial changes reran; the rest came from DVC
        assert set(row["stages_ran"]) <= {"quantize", "evaluate"}, row
        assert {"prepare", "baseline", "distill", "prune"} <= set(row["stages_skipped"]), row

    table = (repo / "reports/search/trials.csv").read_text().splitlines()
    assert len(table) == 4
    best = json.loads((repo / "reports/search/best.json").read_text())
    passing = [row for row in rows if row["passes"]]
    assert best["size_bytes"] == min(row["size_bytes"] for row in passing)
    # the best trial, read on test once: its params rerun with evaluate's confirmation
    confirmation = best["confirmation"]
    assert confirmation["passes"] and confirmation["trial"] == best["trial"], confirmation
    assert confirmation["experiment"] == f"search-t{best['trial']}-confirmed"
    assert confirmation["test"]["candidate"] == best["candidate"]
    report = (repo / "reports/search/trials.md").read_text()
    assert "Confirmation on test: passes" in report
    assert f"dvc exp apply {confirmation['experiment']}" in report
    assert (repo / "reports/search/pareto.png").stat().st_size > 10_000

    applied = run(repo, "dvc", "exp", "apply", confirmation["experiment"])
    assert applied.returncode == 0, applied.stderr
    evaluation = json.loads(Artifacts(repo).evaluate_metrics.read_text())
    again = trial_model(evaluation, SearchParams(max_accuracy_drop=1.0))
    assert (again["candidate"], again["size_bytes"]) == (best["candidate"], best["size_bytes"])
    status = run(repo, "dvc", "status", "--json")
    assert json.loads(status.stdout) == {}, status.stdout  # outs, lock and params agree


def _studies(repo: Path) -> dict[str, int]:
    """Each study of the repository's journal: its finished (COMPLETE) trials."""
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(repo / "reports/search/study.journal"))
    )
    return {
        name: len(
            optuna.load_study(study_name=name, storage=storage).get_trials(
                states=(optuna.trial.TrialState.COMPLETE,)
            )
        )
        for name in optuna.get_all_study_names(storage)
    }


@pytest.mark.slow  # about 3 min on 2 cores: 1 tiny trial and its confirmation, after the test above
def test_compress_search_fresh_runs_a_new_trial_beside_a_finished_study(search_repo: Path) -> None:
    repo = search_repo
    before = _studies(repo) if (repo / "reports/search/study.journal").exists() else {}
    compress = str(Path(sys.executable).parent / "compress")
    searching = _search_process(
        repo, compress, "search", "--study", "search", "--trials", "1", "--fresh"
    )
    assert searching.wait(timeout=1500) == 0, (repo.parent / "search.log").read_text()[-3000:]
    after = _studies(repo)
    (new,) = set(after) - set(before)
    assert new == ("search-2" if "search" in before else "search")
    assert after[new] == 1
    assert {name: after[name] for name in before} == before  # the finished study is kept
    assert "workers.log" in {path.name for path in (repo / "reports/search").iterdir()}


def test_trials_no_worker_takes_are_queued_again_when_the_budget_runs_out(
    harness, tmp_path: Path
) -> None:
    """A pool nobody polls (e.g. a Docker pool whose workers are down): the search stops at
    `max_minutes` instead of waiting forever, and the trials wait in the study for a resume."""
    repo = copy_repo(tmp_path / "repo")
    no_worker = {"start_workers": False, "work_pool": "nobody-polls", "max_minutes": 0.02}
    edit_params(repo, lambda p: p["search"].update(no_worker))
    searching = _search_process(repo)
    try:
        assert searching.wait(timeout=300) == 0, (repo.parent / "search.log").read_text()[-3000:]
    finally:
        if searching.poll() is None:  # still waiting for a worker: the defect this guards
            os.killpg(searching.pid, signal.SIGKILL)
    study = open_study(repo / "reports/search/study.journal", "search", seed=0)
    cut = study.get_trials(states=(optuna.trial.TrialState.FAIL,))
    assert len(cut) == 2 and all(t.user_attrs["requeued"] for t in cut)  # search.workers: 2
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert [t.system_attrs["fixed_params"] for t in waiting] == [t.params for t in cut]
    with get_client(sync_client=True) as client:
        runs = [client.read_flow_run(t.user_attrs["flow_run_id"]) for t in cut]
    assert all(run.state.type.value in ("CANCELLING", "CANCELLED") for run in runs)
    assert (repo / "reports/search/trials.csv").exists()


def test_local_workers_share_the_cores_unless_threads_are_set(monkeypatch) -> None:
    """Two workers on this machine get no more torch threads between them than it has cores
    (at least one each); an OMP_NUM_THREADS the user set is left as it is."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    threads = int(torch_threads(2)["OMP_NUM_THREADS"])
    assert threads >= 1 and (threads == 1 or 2 * threads <= os.cpu_count())
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert torch_threads(2) == {}
