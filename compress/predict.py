"""Predictions of any model the pipeline exported, from image files: the model's own contract
says how to decode, resize and normalize them (with the decoder data preparation uses), and
which class each output is."""

from __future__ import annotations

import csv
import glob
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.special import softmax

from compress.contract import read_contract
from compress.data import EVAL_BATCH_SIZE, normalize
from compress.errors import PipelineError
from compress.runtimes import load_runner
from compress.sources import IMAGE_READ_ERRORS, decode_image


@dataclass
class Prediction:
    file: str
    classes: list[str]  # the top k, most probable first
    probabilities: list[float]


def expand_inputs(inputs: list[str]) -> list[Path]:
    """Files as given, folders searched recursively (hidden files skipped), globs expanded."""
    files: list[Path] = []
    for entry in inputs:
        path = Path(entry)
        if path.is_dir():
            files += sorted(
                p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")
            )
        elif path.is_file():
            files.append(path)
        else:
            matches = sorted(Path(m) for m in glob.glob(entry, recursive=True) if Path(m).is_file())
            if not matches:
                raise PipelineError(
                    f"'{entry}' is neither a file, a folder nor a glob that matches files; "
                    "check the path (quote globs so that the shell does not expand them)."
                )
            files += matches
    return files


def predict_files(
    model: Path,
    files: list[Path],
    runtime: str = "onnxruntime",
    top_k: int = 3,
    batch_size: int = EVAL_BATCH_SIZE,
    threads: int = 2,
) -> tuple[list[Prediction], list[tuple[str, str]]]:
    """Top-k predictions per readable file, and (file, reason) for each unreadable one."""
    contract = read_contract(model)
    runner = load_runner(runtime, model, threads)
    top_k = min(top_k, len(contract.classes))
    predictions, unreadable = [], []
    for start in range(0, len(files), batch_size):
        decoded, names = [], []
        for file in files[start : start + batch_size]:
            try:
                decoded.append(decode_image(file, contract.image_size, contract.channels))
                names.append(str(file))
            except IMAGE_READ_ERRORS as error:
                unreadable.append((str(file), f"{error.__class__.__name__}: {error}"))
        if not decoded:
            continue
        images = normalize(torch.from_numpy(np.stack(decoded)), contract).numpy()
        probabilities = softmax(runner(images).astype(np.float64), axis=1)
        for name, row in zip(names, probabilities, strict=True):
            order = np.argsort(-row, kind="stable")[:top_k]
            predictions.append(
                Prediction(
                    name, [contract.classes[i] for i in order], [float(row[i]) for i in order]
                )
            )
    return predictions, unreadable


def format_predictions(predictions: list[Prediction], style: str) -> str:
    """`table` for people, `json` and `csv` (one row per image) for programs."""
    if style == "json":
        rows = [
            {
                "file": p.file,
                "top": [
                    {"class": c, "probability": round(q, 6)}
                    for c, q in zip(p.classes, p.probabilities, strict=True)
                ],
            }
            for p in predictions
        ]
        return json.dumps(rows, indent=2) + "\n"
    k = max((len(p.classes) for p in predictions), default=0)
    if style == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(
            ["file"] + [f"{kind}_{i}" for i in range(1, k + 1) for kind in ("class", "probability")]
        )
        for p in predictions:
            cells = [
                v for c, q in zip(p.classes, p.probabilities, strict=True) for v in (c, f"{q:.6f}")
            ]
            writer.writerow([p.file, *cells])
        return buffer.getvalue()
    width = max((len(p.file) for p in predictions), default=4)
    lines = [f"{'file':<{width}}  top-{k}"]
    for p in predictions:
        ranked = "  ".join(f"{c} {q:6.2%}" for c, q in zip(p.classes, p.probabilities, strict=True))
        lines.append(f"{p.file:<{width}}  {ranked}")
    return "\n".join(lines) + "\n"


FORMATS = ("table", "json", "csv")
