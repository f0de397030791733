"""`compress.runtime` on its own: the `Classifier` API on every kind of input, its errors, and
the `compress-runtime` distribution installed alone (no torch, no pipeline) giving exactly the
predictions of the full install."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image

from compress.core.artifacts import Artifacts
from compress.data.loaders import eval_loader, load_info, load_split
from compress.evaluation.benchmark import encode_png
from compress.evaluation.inference import split_logits
from compress.runtime.classifier import Classifier
from compress.runtime.errors import InputError
from compress.runtime.runners import load_runner

REPO_ROOT = Path(__file__).resolve().parents[1]
# The runtime's dependencies and theirs (onnxruntime's), linked into the runtime-only venv.
RUNTIME_DISTRIBUTIONS = ("numpy", "pillow", "onnxruntime", "flatbuffers", "packaging", "protobuf")


def _test_pngs(artifacts: Artifacts, folder: Path, count: int) -> list[Path]:
    """The first test images as 8-bit PNG files (what a deployed model receives)."""
    images = load_split("test", artifacts.prepared_dir)[0][:count].numpy()
    folder.mkdir(parents=True, exist_ok=True)
    files = [folder / f"{index:04d}.png" for index in range(count)]
    for file, image in zip(files, images, strict=True):
        file.write_bytes(encode_png(image))
    return files


def _pipeline_classes(artifacts: Artifacts, count: int) -> list[str]:
    """The teacher's classes on the prepared test images, through the training side's loader
    (torch datasets) and the evaluation's runner: the reference the runtime must reproduce."""
    info = load_info(artifacts.prepared_dir)
    runner = load_runner("onnxruntime", artifacts.teacher_onnx, 2)
    logits, _ = split_logits({"teacher": runner}, eval_loader("test", info, artifacts.prepared_dir))
    return [info.classes[i] for i in logits["teacher"][:count].argmax(axis=1)]


def test_every_input_kind_gives_the_classes_of_the_pipeline(
    baseline_artifacts: Artifacts, tmp_path: Path
) -> None:
    """Files, a folder, uint8 and float arrays and PIL images of the same images all give the
    classes the pipeline's own loader and runner give. The digits' 17 grey levels are not 8-bit
    values, so the 8-bit inputs are compared with the files, which carry the same rounding."""
    files = _test_pngs(baseline_artifacts, tmp_path / "pngs", 40)
    classifier = Classifier(baseline_artifacts.teacher_onnx)
    from_files = classifier.predict([str(f) for f in files])
    from_folder = classifier.predict(tmp_path / "pngs")
    pixels = [np.asarray(Image.open(file)) for file in files]  # (H, W) uint8
    from_uint8 = classifier.predict([p[..., None] for p in pixels])  # (H, W, 1)
    from_float = classifier.predict([p.astype(np.float32) / 255 for p in pixels])  # (H, W)
    from_pil = classifier.predict([Image.open(file) for file in files])
    classes = [p.classes[0] for p in from_files]
    for other in (from_folder, from_uint8, from_float, from_pil):
        assert [p.classes[0] for p in other] == classes
    assert [p.probabilities for p in from_uint8] == [p.probabilities for p in from_files]
    expected = _pipeline_classes(baseline_artifacts, 40)
    assert np.mean([a == b for a, b in zip(classes, expected, strict=True)]) >= 0.95
    assert [Path(p.source).name for p in from_folder] == [f.name for f in files]
    assert from_uint8[0].source == "ndarray[0]" and from_pil[1].source == "PngImageFile[1]"


def test_probabilities_are_a_distribution_sorted_top_k(baseline_artifacts: Artifacts) -> None:
    classifier = Classifier(baseline_artifacts.teacher_onnx)
    image = load_split("test", baseline_artifacts.prepared_dir)[0][0, 0].numpy()
    (prediction,) = classifier.predict(image, top_k=10)
    assert sorted(prediction.classes) == classifier.classes
    assert prediction.probabilities == sorted(prediction.probabilities, reverse=True)
    assert abs(sum(prediction.probabilities) - 1) < 1e-9


def test_an_array_of_the_wrong_channel_count_is_a_clear_error(
    baseline_artifacts: Artifacts,
) -> None:
    classifier = Classifier(baseline_artifacts.teacher_onnx)
    with pytest.raises(InputError, match=r"shape \(8, 8, 3\) is not an image of 1 channel\(s\)"):
        classifier.predict(np.zeros((8, 8, 3), dtype=np.uint8))


def test_a_model_without_contract_and_a_missing_model_are_clear_errors(
    baseline_artifacts: Artifacts, tmp_path: Path
) -> None:
    model = onnx.load(str(baseline_artifacts.teacher_onnx))
    del model.metadata_props[:]
    onnx.save(model, str(tmp_path / "bare.onnx"))
    with pytest.raises(InputError, match=r"missing: compress\.classes, compress\.channels"):
        Classifier(tmp_path / "bare.onnx")
    with pytest.raises(InputError, match=r"'.*absent\.onnx' not found"):
        Classifier(tmp_path / "absent.onnx")
    (tmp_path / "text.onnx").write_text("not a model")
    with pytest.raises(InputError, match=r"text\.onnx' is not a readable ONNX model"):
        Classifier(tmp_path / "text.onnx")


def test_an_unreadable_file_is_an_error_for_the_api(
    baseline_artifacts: Artifacts, tmp_path: Path
) -> None:
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(InputError, match=r"broken\.png' is not a readable image"):
        Classifier(baseline_artifacts.teacher_onnx).predict(tmp_path / "broken.png")


def _runtime_only_venv(tmp_path: Path) -> Path:
    """A virtual environment holding the compress-runtime wheel built from this repository and,
    linked from this one, only the distributions it needs: offline and without torch."""
    wheels, venv = tmp_path / "wheels", tmp_path / "venv"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
        + ["-w", str(wheels), str(REPO_ROOT / "runtime")],
        check=True,
        capture_output=True,
    )
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    site = next((venv / "lib").glob("python*/site-packages"))
    for name in RUNTIME_DISTRIBUTIONS:
        distribution = importlib.metadata.distribution(name)
        tops = {Path(str(file)).parts[0] for file in distribution.files}
        for top in tops - {"..", "bin"}:
            source = Path(distribution.locate_file(top))
            if source.exists() and not (site / top).exists():
                (site / top).symlink_to(source)
    wheel = next(wheels.glob("compress_runtime-*.whl"))
    subprocess.run(
        [venv / "bin" / "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
    )
    return venv


def test_runtime_alone_predicts_exactly_as_the_full_install(
    baseline_artifacts: Artifacts, tmp_path: Path
) -> None:
    venv = _runtime_only_venv(tmp_path)
    files = _test_pngs(baseline_artifacts, tmp_path / "pngs", 30)
    arguments = [str(baseline_artifacts.teacher_onnx), str(files[0].parent), "--format", "csv"]
    alone = subprocess.run(
        [venv / "bin" / "compress-predict", *arguments],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    full = subprocess.run(
        [sys.executable, "-m", "compress.commands.cli", "predict", *arguments],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert alone.returncode == 0, alone.stderr
    assert alone.stdout == full.stdout and len(alone.stdout.splitlines()) == 31
    probe = subprocess.run(
        [venv / "bin" / "python", "-c", "import compress.runtime.predict as p; import torch"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert "No module named 'torch'" in probe.stderr
