"""`compress run`, `compress cycle` and `compress search`: what a user runs, each the flow's own
command line (`python -m flows.<name>`) in a child process. The library does not import the
flows (they sit above it), and the child exits as the flow's edge decides (1: a person must fix
something, named; 75: transient)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

STAGES = "prepare, baseline, validate_teacher, teacher_outputs, distill, prune, quantize, evaluate"


def run_flow(module: str, args: list[str], repo: Path) -> None:
    """The flow's command in this interpreter; its exit code becomes this command's."""
    done = subprocess.run([sys.executable, "-m", module, "--repo", str(repo), *args], check=False)
    if done.returncode:
        raise SystemExit(done.returncode)


def run_command(args: argparse.Namespace) -> None:
    flags = [flag for key in args.set for flag in ("--set", key)]
    flags += ["--until", args.until] if args.until else []
    flags += ["--experiment", args.experiment] if args.experiment else []
    run_flow("flows.compress", flags, args.repo)


def cycle_command(args: argparse.Namespace) -> None:
    run_flow("flows.update_cycle", [], args.repo)


def search_command(args: argparse.Namespace) -> None:
    flags = ["--study", args.study]
    flags += ["--trials", str(args.trials)] if args.trials is not None else []
    run_flow("flows.search", flags + (["--fresh"] if args.fresh else []), args.repo)


def _repo(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--repo", type=Path, default=Path("."), help="the pipeline's git + DVC repository root"
    )


def add_workflows(commands: argparse._SubParsersAction) -> None:
    """The three subcommands on the `compress` parser."""
    run = commands.add_parser(
        "run", help="run the pipeline as the Prefect flow `compress` (DVC skips what is current)"
    )
    run.add_argument("--until", metavar="STAGE", help=f"stop after this stage: {STAGES}")
    run.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a params override such as prune.target_ratio=0.6 (repeatable); with any, the run "
        "is a DVC experiment in a temporary directory and params.yaml is left as it is",
    )
    run.add_argument("--experiment", metavar="NAME", help="the experiment's name (with --set)")
    _repo(run)
    run.set_defaults(run=run_command)
    cycle = commands.add_parser(
        "cycle", help="one model-update cycle: re-compress, compare with production, promote"
    )
    _repo(cycle)
    cycle.set_defaults(run=cycle_command)
    search = commands.add_parser(
        "search", help="the recipe search over search.space (needs a Prefect server)"
    )
    search.add_argument(
        "--study", default="search", help="the Optuna study's name; resumed if it exists"
    )
    search.add_argument(
        "--trials", type=int, metavar="N", help="the study's trial budget (search.max_trials)"
    )
    search.add_argument(
        "--fresh",
        action="store_true",
        help="start a new study (STUDY-2, STUDY-3, ...) beside a finished one of that name",
    )
    _repo(search)
    search.set_defaults(run=search_command)
