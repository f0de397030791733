"""The `compress-predict` command: classify image files with a model the pipeline exported.

compress-predict MODEL PATH... [--top-k 3] [--format table|json|csv]
                 [--runtime onnxruntime|openvino] [--batch-size 256] [--threads 2] [--output FILE]

Files, folders (searched recursively) and quoted globs; unreadable files are listed and skipped,
and the command exits 1 only when no file could be read (75 for an I/O error writing --output).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from compress.runtime.classifier import Classifier, Prediction, expand_paths
from compress.runtime.errors import InputError, exit_for
from compress.runtime.runners import EVAL_BATCH_SIZE, RUNTIMES

FORMATS = ("table", "json", "csv")
log = logging.getLogger(__name__)


def format_predictions(predictions: list[Prediction], style: str) -> str:
    """`table` for people, `json` and `csv` (one row per image) for programs."""
    if style == "json":
        rows = [
            {
                "file": p.source,
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
            writer.writerow([p.source, *cells])
        return buffer.getvalue()
    width = max((len(p.source) for p in predictions), default=4)
    lines = [f"{'file':<{width}}  top-{k}"]
    for p in predictions:
        ranked = "  ".join(f"{c} {q:6.2%}" for c, q in zip(p.classes, p.probabilities, strict=True))
        lines.append(f"{p.source:<{width}}  {ranked}")
    return "\n".join(lines) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model", type=Path, help="an ONNX model of the pipeline, e.g. models/shipped.onnx"
    )
    parser.add_argument(
        "paths", nargs="+", help="image files, folders (searched recursively) or globs"
    )
    parser.add_argument(
        "--top-k", type=int, default=3, help="classes listed per image, most likely first"
    )
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="table",
        help="table for people; json or csv (one row per image) for programs",
    )
    parser.add_argument(
        "--runtime",
        choices=list(RUNTIMES),
        default="onnxruntime",
        help="the inference engine (openvino needs the runtime's openvino extra)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=EVAL_BATCH_SIZE,
        help="images per inference call (larger: faster, more memory)",
    )
    parser.add_argument("--threads", type=int, default=2, help="CPU threads of the runtime")
    parser.add_argument("--output", type=Path, help="write here instead of standard output")


def write_output(path: Path, text: str) -> None:
    """Written beside the target and renamed: a reader never sees half a file."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text)
    os.replace(partial, path)


def predict_command(args: argparse.Namespace) -> None:
    files = expand_paths(args.paths)
    classifier = Classifier(args.model, args.runtime, args.threads)
    predictions, unreadable = classifier.predict_files(files, args.top_k, args.batch_size)
    for file, reason in unreadable:
        log.warning("skipped unreadable file %s (%s)", file, reason)
    if not predictions:
        raise InputError(
            f"None of the {len(files)} file(s) could be read as an image; the first: "
            f"{unreadable[0][0] if unreadable else 'none given'}. Pass image files or folders."
        )
    text = format_predictions(predictions, args.format)
    if args.output:
        write_output(args.output, text)
    else:
        sys.stdout.write(text)
    if unreadable:
        log.warning("%d of %d file(s) unreadable, listed above", len(unreadable), len(files))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="compress-predict", description=__doc__.split("\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        predict_command(args)
    except (InputError, OSError) as error:
        exit_for(error, "Check the output folder's free space, then rerun.")


if __name__ == "__main__":
    main()
