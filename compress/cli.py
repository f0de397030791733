"""The `compress` command (installed by pyproject.toml):

compress predict MODEL PATH... [--top-k 3] [--format table|json|csv] [--runtime onnxruntime|openvino]
compress check-params [params.yaml]
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from compress import atomic
from compress.data import EVAL_BATCH_SIZE
from compress.errors import PipelineError
from compress.params_file import PARAMS_FILE, SECTIONS, load_params
from compress.predict import FORMATS, expand_inputs, format_predictions, predict_files
from compress.runner import run_stage
from compress.runtimes import RUNTIMES

log = logging.getLogger(__name__)


def predict_command(args: argparse.Namespace) -> None:
    files = expand_inputs(args.paths)
    predictions, unreadable = predict_files(
        args.model, files, args.runtime, args.top_k, args.batch_size, args.threads
    )
    for file, reason in unreadable:
        log.warning("skipped unreadable file %s (%s)", file, reason)
    if not predictions:
        raise PipelineError(
            f"None of the {len(files)} file(s) could be read as an image; the first: "
            f"{unreadable[0][0] if unreadable else 'none given'}. Pass image files or folders."
        )
    text = format_predictions(predictions, args.format)
    if args.output:
        atomic.write_text(args.output, text)
    else:
        sys.stdout.write(text)
    if unreadable:
        log.warning("%d of %d file(s) unreadable, listed above", len(unreadable), len(files))


def check_params_command(args: argparse.Namespace) -> None:
    load_params(args.path)
    print(f"'{args.path}' is valid: sections {', '.join(SECTIONS)}.")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="compress", description=__doc__.split("\n")[0])
    commands = top.add_subparsers(dest="command", required=True)
    predict = commands.add_parser("predict", help="classify image files with an exported model")
    predict.add_argument(
        "model", type=Path, help="an ONNX model of the pipeline, e.g. models/shipped.onnx"
    )
    predict.add_argument(
        "paths", nargs="+", help="image files, folders (searched recursively) or globs"
    )
    predict.add_argument("--top-k", type=int, default=3)
    predict.add_argument("--format", choices=FORMATS, default="table")
    predict.add_argument("--runtime", choices=list(RUNTIMES), default="onnxruntime")
    predict.add_argument("--batch-size", type=int, default=EVAL_BATCH_SIZE)
    predict.add_argument("--threads", type=int, default=2)
    predict.add_argument("--output", type=Path, help="write here instead of standard output")
    predict.set_defaults(run=predict_command)
    check = commands.add_parser("check-params", help="validate a params file, run nothing")
    check.add_argument("path", nargs="?", type=Path, default=PARAMS_FILE)
    check.set_defaults(run=check_params_command)
    return top


def main() -> None:
    args = parser().parse_args()
    run_stage(lambda: args.run(args))


if __name__ == "__main__":
    main()
