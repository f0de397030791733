"""The `compress` command (installed by pyproject.toml):

compress predict MODEL PATH... (the `compress-predict` command of compress.runtime; same options)
compress check-params [params.yaml]
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from compress.commands.runner import run_stage
from compress.config.file import PARAMS_FILE
from compress.config.params import SECTIONS, load_params
from compress.runtime.predict import add_arguments, predict_command

log = logging.getLogger(__name__)


def check_params_command(args: argparse.Namespace) -> None:
    load_params(args.path)
    print(f"'{args.path}' is valid: sections {', '.join(SECTIONS)}.")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="compress", description=__doc__.split("\n")[0])
    commands = top.add_subparsers(dest="command", required=True)
    predict = commands.add_parser("predict", help="classify image files with an exported model")
    add_arguments(predict)
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
