"""The model card of the shipped model, from the pipeline's own records (metrics, the shipped
manifest, dvc.lock, params): what the model is, how it was made, how it performs, what changed
since the previous version, and where it was measured. `evaluate` writes it as a DVC out beside
the shipped manifest, so the two always agree; the model-update cycle (and `compress model-card
--version`) writes a versioned copy with the change record outside the DVC outs, so a promotion
does not make `evaluate` look changed."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from scipy.stats import binomtest

from compress.core import atomic
from compress.core.artifacts import Artifacts
from compress.core.errors import PipelineError
from compress.core.lock import lock_hashes
from compress.evaluation.summary import stage_seconds

RECIPE_SECTIONS = ("distill", "prune", "quantize", "evaluate")


MACS_FROM = {  # candidate -> (metrics file entry, its section): INT8 keeps the float MACs
    "teacher_fp32": ("baseline_metrics", None),
    "teacher_int8": ("baseline_metrics", None),
    "distilled": ("distill_metrics", "distilled"),
    "control": ("distill_metrics", "control"),
    "pruned": ("prune_metrics", "pruned"),
    "quantized": ("prune_metrics", "pruned"),
}


def candidate_macs(artifacts: Artifacts, candidate: str) -> int | None:
    if candidate not in MACS_FROM:
        return None
    entry, section = MACS_FROM[candidate]
    figures = _json(getattr(artifacts, entry))
    return (figures.get(section, {}) if section else figures).get("macs")


def _json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def what_it_is(shipped: dict, figures: dict, macs: int | None) -> list[str]:
    contract = shipped["contract"]
    return [
        "## What it is",
        "",
        f"- Candidate **{shipped['candidate']}** (`{shipped['source_file']}`), ONNX "
        f"{figures['size_bytes']:,} bytes, {figures['params']:,} weights, "
        f"{f'{macs:,} MACs' if macs else 'MACs not recorded'}",
        f"- Classes ({len(contract['classes'])}): {', '.join(contract['classes'])}",
        f"- Input: {contract['channels']} x {contract['image_size']} x {contract['image_size']}, "
        f"mean {contract['mean']}, std {contract['std']} (the contract in the ONNX metadata; "
        "`compress-predict` applies it)",
        "",
    ]


def how_it_was_made(artifacts: Artifacts, shipped: dict, profile: dict, params: dict) -> list[str]:
    seconds = stage_seconds(artifacts)
    splits = {name: split["images"] for name, split in profile.get("splits", {}).items()}
    recipe = {section: params.get(section) for section in RECIPE_SECTIONS}
    lock = artifacts.dvc_lock.read_text() if artifacts.dvc_lock.is_file() else None
    teacher_md5 = lock_hashes(lock, "baseline").get(str(Artifacts.outs()["teacher_pt"]))
    return [
        "## How it was made",
        "",
        f"- Teacher: `{params.get('teacher', {}).get('arch')}`, "
        f"models/teacher.pt md5 `{teacher_md5}`",
        f"- Data: `{params.get('data', {}).get('source')}`, prepared data md5 "
        f"`{shipped.get('data_md5')}`, content hash `{profile.get('source', {}).get('content_hash')}`",
        f"- Images per class: {profile.get('source', {}).get('class_counts')}; per split: {splits}",
        f"- Code commit `{shipped.get('git_commit')}`, params sha256 `{shipped.get('params_sha256')}`",
        f"- Seconds per stage (this run): {seconds}",
        "- Recipe:",
        "",
        "```yaml",
        yaml.safe_dump(recipe, sort_keys=False).rstrip(),
        "```",
        "",
    ]


def how_it_performs(figures: dict) -> list[str]:
    interval = figures.get("drop_interval", {})
    images = interval.get("images")
    accuracy = figures["accuracy"]
    lines = ["## How it performs (test split)", ""]
    if images:
        low, high = binomtest(round(accuracy * images), images).proportion_ci(method="wilson")
        lines.append(
            f"- Accuracy {accuracy:.4f} (95 % Wilson interval {low:.4f} to {high:.4f}, "
            f"{images} images); drop against the fp32 teacher {interval['drop'] * 100:.2f} pt "
            f"(one-sided {interval['confidence']:.0%} bound {interval['upper_one_sided'] * 100:.2f} pt)"
        )
    lines += [
        f"- Per class: {figures['per_class_accuracy']}",
        f"- Calibration: ECE {figures['ece']:.4f}, NLL {figures['nll']:.4f}",
        "",
        "| runtime | accuracy | " + " | ".join(figures["latency"]) + " (p50 ms) |",
        "|---|---|" + "---|" * len(figures["latency"]),
    ]
    for runtime, measured in figures["runtimes"].items():
        latency = " | ".join(f"{v['p50_ms']:.3f}" for v in measured["latency"].values())
        lines.append(f"| {runtime} | {measured['accuracy']:.4f} | {latency} |")
    return lines + [""]


def where_measured(machine: dict) -> list[str]:
    sets = ", ".join(machine.get("instruction_sets", [])) or "none of AVX2 / AVX-512 / VNNI / AMX"
    return [
        "## Where it was measured",
        "",
        f"- CPU: {machine.get('cpu')} ({machine.get('cores')} cores), instruction sets: {sets}",
        f"- ONNX Runtime {machine.get('onnxruntime')}, OpenVINO {machine.get('openvino')}, "
        f"Python {machine.get('python')}. INT8 speed (and, slightly, accuracy) differ on CPUs "
        "with other instruction sets: measure there before relying on these figures.",
        "",
    ]


def model_card(artifacts: Artifacts, version: str | None, changes: dict | None) -> str:
    """The card as Markdown; `changes` is the cycle's record of what changed since the
    previous version (None outside a cycle)."""
    if not artifacts.shipped_json.is_file():
        raise PipelineError(
            f"'{artifacts.shipped_json}' not found: nothing is shipped yet; run `dvc repro`."
        )
    shipped = _json(artifacts.shipped_json)
    evaluation = _json(artifacts.evaluate_metrics)
    figures = evaluation["candidates"][shipped["candidate"]]
    macs = candidate_macs(artifacts, shipped["candidate"])
    params = yaml.safe_load(artifacts.params_file.read_text())
    lines = [
        f"# Model card: {params.get('registry', {}).get('artifact', 'shipped-model')}"
        f"{f' {version}' if version else ''}",
        "",
        *what_it_is(shipped, figures, macs),
        *how_it_was_made(artifacts, shipped, _json(artifacts.data_profile), params),
        *how_it_performs(figures),
        "## What changed since the previous version",
        "",
        "```json\n" + json.dumps(changes, indent=2, sort_keys=True) + "\n```"
        if changes
        else "Not recorded: written outside the model-update cycle.",
        "",
        *where_measured(evaluation.get("machine", {})),
    ]
    return "\n".join(lines)


def write_model_card(
    artifacts: Artifacts, version: str | None = None, changes: dict | None = None
) -> Path:
    """The workspace's card (`evaluate`'s out) without a version; with one, the registry's copy."""
    target = artifacts.release_card if version else artifacts.model_card
    atomic.write_text(target, model_card(artifacts, version, changes) + "\n")
    return target
