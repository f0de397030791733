"""Table of bad inputs across params, data, checkpoints and ONNX files. Each case runs a stage's
real `main()` through its CLI edge (`run_stage`) in a working folder holding prepared digits
and a trained teacher, and asserts the exit code, a message naming the culprit, and that no
file in the folder was written or changed. The folder is the working directory here because a
stage's command line runs in the repository root (DVC runs it there): that is its interface."""

from __future__ import annotations

import hashlib
import importlib
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from compress.commands.runner import run_stage
from compress.core.artifacts import Artifacts
from compress.data.shards import ShardReader, ShardWriter
from compress.models.builders import build_model
from compress.models.onnx_export import export_onnx
from compress.runtime.errors import TRANSIENT_EXIT_CODE
from tests.factories import tiny_cnn
from tests.repos import REPO_ROOT


def _params(folder: Path, edit: Callable[[dict], None]) -> None:
    params = yaml.safe_load((folder / "params.yaml").read_text())
    edit(params)
    (folder / "params.yaml").write_text(yaml.safe_dump(params))


def _set(section: str, **values) -> Callable[[Path], None]:
    def apply(folder: Path) -> None:
        def edit(params: dict) -> None:
            target = params[section]
            for key, value in values.items():
                *parents, leaf = key.split("__")
                node = target
                for parent in parents:
                    node = node[parent]
                node[leaf] = value

        _params(folder, edit)

    return apply


def _raw_params(text: str) -> Callable[[Path], None]:
    return lambda folder: (folder / "params.yaml").write_text(text)


def _teacher_checkpoint(make: Callable[[Path], None]) -> Callable[[Path], None]:
    """Write a user checkpoint with `make` and point teacher.checkpoint at it."""

    def apply(folder: Path) -> None:
        (folder / "models/input").mkdir(parents=True, exist_ok=True)
        make(folder / "models/input/user_teacher.pt")
        _set("teacher", checkpoint="models/input/user_teacher.pt", epochs=0)(folder)

    return apply


def _garbage(path: Path) -> None:
    path.write_bytes(b"\x00not a checkpoint" * 10)


def _truncated(path: Path) -> None:
    data = (path.parent.parent / "teacher.pt").read_bytes()  # models/input/ -> models/
    path.write_bytes(data[: len(data) // 2])


def _other_arch(path: Path) -> None:
    torch.save(build_model("mobilenet_v3_small", 10, 1, 16).state_dict(), path)


def _extra_keys(path: Path) -> None:
    state = torch.load(path.parent.parent / "teacher.pt", weights_only=True)["state_dict"]
    state["extra.weight"] = torch.zeros(3)
    torch.save(state, path)


def _pickled_module(path: Path) -> None:
    torch.save(torch.nn.Linear(2, 2), path)


def _onnx_teacher(make: Callable[[Path], None]) -> Callable[[Path], None]:
    """Write a user ONNX teacher with `make` and point teacher.onnx at it."""

    def apply(folder: Path) -> None:
        (folder / "models/input").mkdir(parents=True, exist_ok=True)
        make(folder / "models/input/user_teacher.onnx")
        _set("teacher", onnx="models/input/user_teacher.onnx")(folder)

    return apply


def _other_classes(path: Path) -> None:
    export_onnx(tiny_cnn(5, 1), (1, 8, 8), path)


def _other_channels(path: Path) -> None:
    export_onnx(tiny_cnn(10, 3), (3, 8, 8), path)


def _fixed_batch(path: Path) -> None:
    torch.onnx.export(tiny_cnn(10, 1).eval(), (torch.zeros(1, 1, 8, 8),), str(path), dynamo=False)


def _onnx_teacher_reference(folder: Path) -> None:
    """models/teacher.pt as baseline writes it for an ONNX teacher."""
    reference = {"arch": "onnx", "num_classes": 10, "input_shape": [1, 8, 8], "state_dict": {}}
    torch.save(reference, folder / "models/teacher.pt")


def _both(*setups: Callable[[Path], None]) -> Callable[[Path], None]:
    return lambda folder: [setup(folder) for setup in setups]


def _corrupt(relative: str, content: bytes = b"corrupt") -> Callable[[Path], None]:
    return lambda folder: (folder / relative).write_bytes(content)


def _remove(relative: str) -> Callable[[Path], None]:
    def apply(folder: Path) -> None:
        target = folder / relative
        shutil.rmtree(target) if target.is_dir() else target.unlink()

    return apply


def _tiny_calibration(folder: Path) -> None:
    """The calibration split rewritten with its first 5 images."""
    prepared = folder / "data/prepared"
    reader = ShardReader(prepared, "calibration")
    images, labels = reader.read_all()[:5], reader.labels[:5]
    for shard in reader.files:
        shard.unlink()
    writer = ShardWriter(prepared, "calibration", reader.dtype.name, reader.image_shape)
    for image, label in zip(images, labels, strict=True):
        writer.add(image, label)
    writer.close()


def _image_folder(counts: dict[str, int], bad: int = 0) -> Callable[[Path], None]:
    """An imagefolder source with `counts` random images per class and `bad` unreadable files."""

    def apply(folder: Path) -> None:
        generator = np.random.default_rng(0)
        root = folder / "data/input/images"
        for name, count in counts.items():
            (root / name).mkdir(parents=True)
            for index in range(count):
                pixels = generator.integers(0, 255, (12, 12), dtype=np.uint8)
                Image.fromarray(pixels).save(root / name / f"{index}.png")
        for index in range(bad):
            (root / next(iter(counts)) / f"broken{index}.png").write_bytes(b"\x89PNG broken")
        _set("data", source="imagefolder", path=str(root), image_size=12, calibration_size=10)(
            folder
        )

    return apply


def _blocked_output(folder: Path) -> None:
    """metrics/ is a file, so no metrics file can be written there."""
    shutil.rmtree(folder / "metrics", ignore_errors=True)
    (folder / "metrics").write_text("not a folder")


CASES = [
    # params
    ("typo_key", "distill", _set("distill", temprature=3.0), 1, ["`distill.temperature`"]),
    ("typo_section", "prepare", _raw_params("distil:\n  epochs: 2\n"), 1, ["`distill`"]),
    ("ratio_range", "prune", _set("prune", target_ratio=1.5), 1, ["prune.target_ratio", "1.5"]),
    ("negative_epochs", "baseline", _set("teacher", epochs=-1), 1, ["teacher.epochs", "-1"]),
    ("wrong_type", "baseline", _set("teacher", lr="fast"), 1, ["teacher.lr", "fast"]),
    ("unknown_source", "prepare", _set("data", source="imagenet"), 1, ["data.source"]),
    ("qat_lr_zero", "quantize", _set("quantize", qat__lr_scale=0.0), 1, ["quantize.qat.lr_scale"]),
    ("sparsity_one", "quantize", _set("quantize", sparsity__ratio=1.0), 1, ["sparsity.ratio"]),
    ("kd_loss", "distill", _set("distill", kd_loss="l2"), 1, ["distill.kd_loss", "forward_kl"]),
    ("importance", "prune", _set("prune", importance="magic"), 1, ["prune.importance", "l1"]),
    ("objective", "evaluate", _set("evaluate", objective="cheap"), 1, ["evaluate.objective"]),
    ("device", "baseline", _set("compute", device="tpu"), 1, ["compute.device"]),
    ("nodes", "distill", _set("compute", nodes=2), 1, ["compute.rendezvous", "first node"]),
    (
        "batch_over_processes",
        "distill",
        _set("compute", processes_per_node=3),
        1,
        ["distill.batch_size=64", "compute.processes_per_node"],
    ),
    ("not_yaml", "prepare", _raw_params("data: [unclosed\n"), 1, ["not valid YAML"]),
    ("teacher_arch", "baseline", _set("teacher", arch="resnet1000"), 1, ["resnet1000", "resnet18"]),
    ("student_arch", "distill", _set("distill", student="tinynet"), 1, ["distill.student"]),
    # data
    ("no_path", "prepare", _set("data", source="imagefolder"), 1, ["data.path is required"]),
    (
        "missing_folder",
        "prepare",
        _set("data", source="imagefolder", path="data/input/nowhere"),
        1,
        ["data/input/nowhere", "not a folder"],
    ),
    (
        "untracked_folder",
        "prepare",
        _set("data", source="imagefolder", path="/tmp"),
        1,
        ["data.path '/tmp' is outside data/input/", "dvc import-url /tmp data/input/<name>"],
    ),
    (
        "no_cifar",
        "prepare",
        _set("data", source="cifar10", path="data/input"),
        1,
        ["CIFAR-10 not found"],
    ),
    ("one_class", "prepare", _image_folder({"a": 20}), 1, ["at least 2"]),
    ("empty_class", "prepare", _image_folder({"a": 20, "b": 0}), 1, ["b", "hold no files"]),
    ("small_class", "prepare", _image_folder({"a": 20, "b": 4}), 1, ["b (4)", "min_per_class"]),
    (
        "bad_files",
        "prepare",
        _image_folder({"a": 20, "b": 20}, bad=3),
        1,
        ["max_bad_fraction", "broken0.png"],
    ),
    (
        "missing_split",
        "distill",
        _remove("data/prepared/train.index.json"),
        1,
        ["train.index.json", "dvc repro prepare"],
    ),
    (
        "corrupt_split",
        "distill",
        _corrupt("data/prepared/val-00000.npy"),
        1,
        ["Shard", "val-00000.npy", "dvc repro prepare --force"],
    ),
    ("tiny_calibration", "quantize", _tiny_calibration, 1, ["calibration split", "5 samples"]),
    # checkpoints and ONNX files
    (
        "missing_ckpt",
        "baseline",
        _set("teacher", checkpoint="models/input/nope.pt"),
        1,
        ["nope.pt", "not found"],
    ),
    (
        "untracked_ckpt",
        "baseline",
        _set("teacher", checkpoint="teacher.pt"),
        1,
        ["teacher.checkpoint 'teacher.pt' is outside models/input/", "dvc add models/input"],
    ),
    (
        "garbage_ckpt",
        "baseline",
        _teacher_checkpoint(_garbage),
        1,
        ["user_teacher.pt", "cannot be loaded"],
    ),
    (
        "truncated_ckpt",
        "baseline",
        _teacher_checkpoint(_truncated),
        1,
        ["user_teacher.pt", "cannot be loaded"],
    ),
    (
        "other_arch_ckpt",
        "baseline",
        _teacher_checkpoint(_other_arch),
        1,
        ["user_teacher.pt", "does not fit"],
    ),
    (
        "extra_keys_ckpt",
        "baseline",
        _teacher_checkpoint(_extra_keys),
        1,
        ["user_teacher.pt", "extra.weight"],
    ),
    (
        "pickled_module",
        "baseline",
        _teacher_checkpoint(_pickled_module),
        1,
        ["user_teacher.pt", "pickled modules"],
    ),
    (
        "onnx_and_checkpoint",
        "baseline",
        _set("teacher", onnx="models/input/t.onnx", checkpoint="models/input/t.pt"),
        1,
        ["teacher.onnx and teacher.checkpoint", "keep one"],
    ),
    (
        "onnx_other_classes",
        "baseline",
        _onnx_teacher(_other_classes),
        1,
        ["teacher.onnx", "user_teacher.onnx", "(2, 5)", "10 classes"],
    ),
    (
        "onnx_other_channels",
        "baseline",
        _onnx_teacher(_other_channels),
        1,
        ["teacher.onnx", "expects channels 3", "data.channels"],
    ),
    (
        "onnx_fixed_batch",
        "baseline",
        _onnx_teacher(_fixed_batch),
        1,
        ["teacher.onnx", "fixed batch size of 1", "dynamic_axes"],
    ),
    (
        "onnx_garbage",
        "baseline",
        _onnx_teacher(_garbage),
        1,
        ["teacher.onnx", "cannot be loaded by ONNX Runtime"],
    ),
    (
        "onnx_feature_kd",
        "distill",
        _both(_onnx_teacher_reference, _set("distill", feature__weight=0.5)),
        1,
        ["distill.feature.weight is 0.5", "ONNX teacher (teacher.onnx)", "weight: 0"],
    ),
    (
        "onnx_cut_student",
        "distill",
        _both(_onnx_teacher_reference, _set("distill", student="teacher")),
        1,
        ["distill.student: teacher", "ONNX teacher", "name an architecture"],
    ),
    ("corrupt_teacher", "distill", _corrupt("models/teacher.pt"), 1, ["models/teacher.pt"]),
    (
        "missing_teacher",
        "prune",
        _remove("models/teacher.pt"),
        1,
        ["models/teacher.pt", "not found"],
    ),
    ("missing_pruned", "quantize", lambda folder: None, 1, ["models/pruned.pt", "not found"]),
    (
        "corrupt_onnx",
        "evaluate",
        _corrupt("models/teacher.onnx"),
        1,
        ["models/teacher.onnx", "corrupt"],
    ),
    # outputs
    (
        "blocked_output",
        "prepare",
        _blocked_output,
        1,
        ["Cannot write '", "metrics/data_checks.json'"],
    ),
]


def _snapshot(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.md5(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@pytest.mark.parametrize(
    ("name", "stage", "setup", "code", "culprits"), CASES, ids=[c[0] for c in CASES]
)
def test_bad_input_fails_cleanly(
    name: str,
    stage: str,
    setup: Callable[[Path], None],
    code: int,
    culprits: list[str],
    baseline_copy: Artifacts,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder = baseline_copy.root
    shutil.copy(REPO_ROOT / "params.yaml", folder / "params.yaml")
    setup(folder)
    before = _snapshot(folder)
    monkeypatch.chdir(folder)
    with pytest.raises(SystemExit) as exited:
        run_stage(importlib.import_module(f"stages.{stage}").main)
    message = capsys.readouterr().err
    assert exited.value.code == code, message
    for culprit in culprits:
        assert culprit in message, f"{name}: '{culprit}' not in: {message}"
    assert _snapshot(folder) == before, f"{name}: a file was written or changed"


def test_unexpected_io_error_exits_with_the_transient_code(capsys: pytest.CaptureFixture) -> None:
    """An OSError nobody anticipated, with a transient errno (a vanished mount, a full disk
    while reading), exits with the code the Prefect flow retries, with one readable paragraph."""

    def main() -> None:
        raise OSError(28, "No space left on device")

    with pytest.raises(SystemExit) as exited:
        run_stage(main)
    assert exited.value.code == TRANSIENT_EXIT_CODE
    assert "No space left on device" in capsys.readouterr().err


def test_check_params_cli_validates_without_running_anything(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "compress.commands.cli", "check-params"]
    valid = subprocess.run(
        [*command, str(REPO_ROOT / "params.yaml")], capture_output=True, text=True
    )
    assert valid.returncode == 0 and "is valid" in valid.stdout, valid.stderr
    bad = tmp_path / "params.yaml"
    bad.write_text("prune:\n  importanse: l1\n")
    invalid = subprocess.run([*command, str(bad)], capture_output=True, text=True)
    assert invalid.returncode == 1
    assert "unknown key `prune.importanse`. Did you mean `prune.importance`?" in invalid.stderr
