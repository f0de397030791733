"""The model in production against the new one: its version and ONNX file from the registry,
the splits it was made from, the current test images it never trained on, both measured side
by side in one process, and the promotion policy's answer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from prefect import task

from compress.config.evaluate import EvaluateParams
from compress.config.params import Params
from compress.core.artifacts import Artifacts, file_digest
from compress.data.loaders import eval_loader, load_info, matches, split_identities
from compress.evaluation.benchmark import compare_latency
from compress.evaluation.inference import split_logits
from compress.evaluation.promotion import promotion_decision
from compress.evaluation.uncertainty import paired_drop_interval
from compress.registry.versions import stage_holder
from compress.runtime.runners import load_runner, onnxruntime_runner
from flows.compress import StageFailed, run_dvc

SPLITS = ("train", "calibration", "val", "test")


@task
def production_model(repo: Path, artifact: str, stage: str, workdir: Path) -> dict | None:
    """The model the registry has in `stage`: version, commit and a copy of its ONNX file."""
    version = stage_holder(repo, artifact, stage)
    if version is None:
        return None
    commit = version.commit_hexsha
    copy = workdir / "production.onnx"
    shipped = str(Artifacts.outs()["shipped_onnx"])
    result = run_dvc(repo, "get", ".", shipped, "--rev", commit, "-o", str(copy))
    if result.returncode != 0:
        raise StageFailed(
            f"The production model {artifact}@{version.version} (commit {commit[:8]}) is not "
            f"in the DVC cache or remote: {result.stderr.strip()} Run `dvc pull` or `dvc fetch "
            f"--rev {commit}`."
        )
    return {"version": version.version, "commit": commit, "path": copy}


@task
def production_splits(repo: Path, commit: str, workdir: Path) -> dict[str, list[frozenset[str]]]:
    """The identities of every image of every split production was made from (its split key
    and prepared-pixel hash): its commit's `data/prepared/<split>.rows.csv`, fetched with
    `dvc get`."""
    prepared = Artifacts.outs()["prepared_dir"].as_posix()
    hashes = {}
    for split in SPLITS:
        target = workdir / f"production-{split}.rows.csv"
        path = f"{prepared}/{split}.rows.csv"
        result = run_dvc(repo, "get", ".", path, "--rev", commit, "-o", str(target))
        if result.returncode != 0:
            raise StageFailed(
                f"Production's '{path}' (commit {commit[:8]}) is not in the DVC cache or "
                f"remote: {result.stderr.strip()} Run `dvc fetch --rev {commit}`."
            )
        hashes[split] = split_identities(target)
    return hashes


def comparison_images(
    repo: Path, production: dict[str, list[frozenset[str]]] | None
) -> dict[str, np.ndarray]:
    """Masks over the current test split: the images production never trained or calibrated
    on (the comparison's images: with splits by content hash, all of them unless the split
    params or the split key changed; matched by either identity, so production split under an
    older key is judged by what it really trained on), and among those the ones added since
    production's test split."""
    test = split_identities(Artifacts(repo).prepared_dir / "test.rows.csv")
    if production is None:
        return {"compared": np.ones(len(test), dtype=bool), "new": np.zeros(len(test), dtype=bool)}
    seen = set().union(*production["train"], *production["calibration"])
    in_test = set().union(*production["test"])
    return {
        "compared": np.asarray([not matches(image, seen) for image in test], dtype=bool),
        "new": np.asarray([not matches(image, in_test) for image in test], dtype=bool),
    }


@task
def measure_side_by_side(
    repo: Path,
    models: dict[str, Path],
    images: dict[str, np.ndarray],
    evaluation: EvaluateParams,
    confidence: float,
) -> dict[str, dict]:
    """Accuracy on the current test images production never trained on (and on the new ones
    among them), size and latency at batch 1 in `evaluate.target_runtime` (interleaved rounds,
    each round's median kept: the budgets and the `fastest` objective read them), for both
    models in this one process; the new model's drop against production on those images with
    its paired interval."""
    prepared = Artifacts(repo).prepared_dir
    info = load_info(prepared)
    threads = evaluation.intra_op_threads
    target = {
        name: load_runner(evaluation.target_runtime, path, threads) for name, path in models.items()
    }
    latency = compare_latency(
        target, info.input_shape, [1], 5, evaluation.timed_runs, 5, with_rounds=True
    )
    runners = {name: onnxruntime_runner(path, threads) for name, path in models.items()}
    logits, labels = split_logits(runners, eval_loader("test", info, prepared))
    compared, new = images["compared"], images["compared"] & images["new"]
    correct = {name: (logits[name].argmax(axis=1) == labels)[compared] for name in models}
    figures = {
        name: {
            "accuracy": float(correct[name].mean()),
            "accuracy_on_new_test_images": (
                float((logits[name].argmax(axis=1) == labels)[new].mean()) if new.any() else None
            ),
            "size_bytes": path.stat().st_size,
            "latency": {"batch_1": latency[name]["batch_1"]},
            "latency_runtime": evaluation.target_runtime,
            "md5": file_digest(path, "md5"),
        }
        for name, path in models.items()
    }
    if "production" in models:
        figures["new"]["drop_vs_production"] = paired_drop_interval(
            correct["production"], correct["new"], confidence or 0.95
        )
    return figures


def compare(
    root: Path,
    production: dict | None,
    splits: dict[str, list[frozenset[str]]] | None,
    params: Params,
) -> dict:
    """Keep when the new shipped model is production's file; otherwise measure both on the
    current test images production never trained on and let the promotion rule decide."""
    models = {"new": Artifacts(root).shipped_onnx}
    if production is not None and file_digest(production["path"], "md5") == file_digest(
        models["new"], "md5"
    ):
        return {
            "action": "kept",
            "clause": "unchanged",
            "reason": "nothing changed",
            "uncertain": False,
        }
    if production is not None:
        models["production"] = production["path"]
    images = comparison_images(root, splits)
    if not images["compared"].any():
        raise StageFailed(
            "Every current test image was a training or calibration image of production (were "
            "data.seed or the split fractions changed?): there is nothing to compare them on. "
            "Restore the split params, or promote by hand after checking the new model."
        )
    figures = measure_side_by_side(
        root, models, images, params.evaluate, params.registry.confidence
    )
    promotion = promotion_decision(
        figures["new"], figures.get("production"), params.evaluate.objective, params.registry
    )
    test_images = {
        "compared": int(images["compared"].sum()),
        "excluded_production_trained_on": int((~images["compared"]).sum()),
        "new_since_production": int((images["compared"] & images["new"]).sum()),
    }
    return promotion.as_record() | {"figures": figures, "test_images": test_images}
