"""`compress predict` and the contract a model file carries: metadata round trip, a clear error
for a model without it, and messy folders (corrupt, non-image, 16-bit files)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image

from compress.core.artifacts import Artifacts
from compress.data.loaders import (
    EVAL_BATCH_SIZE,
    eval_loader,
    first_image,
    load_info,
    load_split,
    normalize_tensor,
)
from compress.evaluation.benchmark import encode_png
from compress.evaluation.inference import split_logits
from compress.models.onnx_export import copy_contract, with_contract
from compress.runtime.classifier import Classifier, expand_paths
from compress.runtime.contract import read_contract
from compress.runtime.errors import InputError
from compress.runtime.predict import format_predictions
from compress.runtime.runners import load_runner


def _write_test_pngs(
    artifacts: Artifacts, folder: Path, count: int
) -> tuple[list[Path], np.ndarray]:
    images, labels = load_split("test", artifacts.prepared_dir)
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for index in range(count):
        files.append(folder / f"{index:04d}.png")
        files[-1].write_bytes(encode_png(images[index].numpy()))
    return files, labels[:count].numpy()


def test_contract_round_trips_with_provenance(
    baseline_artifacts: Artifacts, tmp_path: Path
) -> None:
    info = load_info(baseline_artifacts.prepared_dir)
    contract = read_contract(baseline_artifacts.teacher_onnx)
    assert contract == info.contract()
    assert (contract.classes, contract.input_shape, contract.color_mode) == (
        [str(i) for i in range(10)],
        (1, 8, 8),
        "L",
    )
    stamped = replace(contract, provenance={"git_commit": "abc", "data_md5": None})
    target = tmp_path / "stamped.onnx"
    onnx.save(with_contract(onnx.load(str(baseline_artifacts.teacher_onnx)), stamped), str(target))
    assert read_contract(target) == stamped
    copied = copy_contract(onnx.load(str(target)), onnx.load(str(target)))  # keys already there
    onnx.checker.check_model(copied)  # ONNX refuses duplicate metadata keys
    assert len(copied.metadata_props) == len(onnx.load(str(target)).metadata_props)


def test_model_without_contract_names_what_is_missing(
    baseline_artifacts: Artifacts, tmp_path: Path
) -> None:
    model = onnx.load(str(baseline_artifacts.teacher_onnx))
    del model.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(model, str(bare))
    with pytest.raises(
        InputError,
        match=r"bare.onnx' carries no complete preprocessing contract.*compress.classes",
    ):
        Classifier(bare)


def test_messy_folder_gives_rows_for_images_and_lists_the_rest(
    baseline_artifacts: Artifacts, tmp_path: Path
) -> None:
    folder = tmp_path / "incoming"
    files, _ = _write_test_pngs(baseline_artifacts, folder / "good", 3)
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    (folder / "notes.txt").write_text("not an image")
    deep = (np.linspace(0, 65535, 64).reshape(8, 8)).astype(np.uint16)
    Image.fromarray(deep).save(folder / "deep.png")
    predictions, unreadable = Classifier(baseline_artifacts.teacher_onnx).predict_files(
        expand_paths([str(folder)]), top_k=2
    )
    assert sorted(Path(p.source).name for p in predictions) == [
        "0000.png",
        "0001.png",
        "0002.png",
        "deep.png",
    ]
    assert sorted(Path(file).name for file, _ in unreadable) == ["corrupt.png", "notes.txt"]
    for prediction in predictions:
        assert (
            len(prediction.classes) == 2
            and prediction.probabilities[0] >= prediction.probabilities[1]
        )
    rows = json.loads(format_predictions(predictions, "json"))
    assert rows[0]["top"][0]["class"] in [str(i) for i in range(10)]
    csv_lines = format_predictions(predictions, "csv").splitlines()
    assert (
        csv_lines[0] == "file,class_1,probability_1,class_2,probability_2" and len(csv_lines) == 5
    )


def test_cli_exits_1_when_no_file_is_an_image(
    baseline_artifacts: Artifacts, tmp_path: Path
) -> None:
    (tmp_path / "a.txt").write_text("no")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "compress.commands.cli",
            "predict",
            str(baseline_artifacts.teacher_onnx),
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1 and "None of the 1 file(s) could be read" in done.stderr


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_predictions_agree_with_the_model_on_the_prepared_images(
    baseline_artifacts: Artifacts, tmp_path: Path, runtime: str
) -> None:
    """PNGs of prepared digits (values k/16, rounded to 8 bits in the file) give the model's own
    classes; exact equality from files is checked in test_pipeline on an image-folder source."""
    files, _ = _write_test_pngs(baseline_artifacts, tmp_path / "pngs", 64)
    classifier = Classifier(baseline_artifacts.teacher_onnx, runtime)
    predictions, unreadable = classifier.predict_files(files, top_k=1)
    info = load_info(baseline_artifacts.prepared_dir)
    images = normalize_tensor(
        load_split("test", baseline_artifacts.prepared_dir)[0][:64], info
    ).numpy()
    runner = load_runner(runtime, baseline_artifacts.teacher_onnx, 2)
    expected = [info.classes[i] for i in runner(images).argmax(axis=1)]
    agreement = np.mean([p.classes[0] == e for p, e in zip(predictions, expected, strict=True)])
    assert not unreadable and len(predictions) == 64
    assert agreement >= 0.95


def test_split_logits_stream_the_split_and_match_it_whole(baseline_artifacts: Artifacts) -> None:
    """Evaluation reads the test split a batch at a time, once for every runner: the logits and
    labels are those of the whole split in memory, bit for bit."""
    prepared = baseline_artifacts.prepared_dir
    info = load_info(prepared)
    raw, labels = load_split("test", prepared)
    whole = normalize_tensor(raw, info).numpy()
    onnx_runner = load_runner("onnxruntime", baseline_artifacts.teacher_onnx, 2)
    sizes: list[int] = []

    def counting(batch: np.ndarray) -> np.ndarray:
        sizes.append(len(batch))
        return onnx_runner(batch)

    runners = {"onnx": onnx_runner, "counting": counting}
    logits, streamed_labels = split_logits(runners, eval_loader("test", info, prepared))
    expected = np.concatenate(
        [onnx_runner(whole[i : i + EVAL_BATCH_SIZE]) for i in range(0, len(whole), EVAL_BATCH_SIZE)]
    )
    assert np.array_equal(logits["onnx"], expected)
    assert np.array_equal(logits["counting"], expected)
    assert np.array_equal(streamed_labels, labels.numpy())
    assert sum(sizes) == len(whole) and max(sizes) == min(EVAL_BATCH_SIZE, len(whole))
    assert np.array_equal(first_image("test", prepared), raw[0].numpy())
