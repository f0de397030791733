"""compress: compress an image classifier with DVC and Prefect, and run what comes after.

  compress run [--until STAGE] [--set KEY=VALUE ...]   the pipeline (the Prefect flow `compress`)
  compress cycle                                   one model-update cycle
  compress search [--study NAME] [--trials N] [--fresh]   the recipe search
  compress check-params [params.yaml]              the params, model references and input paths
  compress predict MODEL PATH...                   classify images (as `compress-predict`)
  compress approve FLOW_RUN_ID [--reject]          answer a cycle waiting for approval
  compress rollback [--to VERSION]                 production back to a registered version
  compress model-card [--version VERSION]          the shipped model's card
  compress results-table [--write]                 the README's results table from metrics/*.json

`compress COMMAND --help` describes every flag."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from uuid import UUID

from prefect.exceptions import FlowPauseTimeout, NotPausedError, ObjectNotFound
from prefect.flow_runs import resume_flow_run

from compress.commands.check_params import check_params
from compress.commands.runner import run_stage
from compress.commands.workflows import add_workflows
from compress.config.file import PARAMS_FILE, load_sections
from compress.config.registry import RegistryParams
from compress.core.artifacts import Artifacts
from compress.evaluation.model_card import write_model_card
from compress.evaluation.summary_table import results_table, write_results_table
from compress.registry.versions import rollback
from compress.runtime.errors import InputError
from compress.runtime.predict import add_arguments, predict_command

log = logging.getLogger(__name__)


def check_params_command(args: argparse.Namespace) -> None:
    print(check_params(args.path))


def rollback_command(args: argparse.Namespace) -> None:
    (settings,) = load_sections(RegistryParams, path=Artifacts(args.repo).params_file)
    decision = rollback(args.repo.resolve(), settings, args.to)
    print(f"{settings.artifact}: {decision['reason']}; `gto show` lists it.")
    if decision["action"] == "rolled_back":
        print(
            "The workspace is left as it is (dvc.lock and models/ still hold the newest run): "
            "the next cycle compares what it builds with the version now serving, and never "
            f"promotes the model rolled back from ({decision['from_version']}) again by itself. "
            f"To work from {decision['version']}'s files: `git checkout "
            f"{settings.artifact}@{decision['version']} -- dvc.lock && dvc checkout`."
        )


def approve_command(args: argparse.Namespace) -> None:
    """Resume a paused cycle with the answer its `Approval` form asks for."""
    answer = {"approve": not args.reject, "approver": args.approver, "reason": args.reason}
    try:
        resume_flow_run(UUID(args.flow_run_id), run_input=answer)
    except (ValueError, NotPausedError, FlowPauseTimeout, ObjectNotFound) as error:
        raise InputError(
            f"Flow run '{args.flow_run_id}' cannot be resumed: {error}. List the runs waiting "
            "for approval with `prefect flow-run ls --state Paused -o json`."
        ) from error
    print(f"{'Rejected' if args.reject else 'Approved'}: flow run {args.flow_run_id} resumes.")


def model_card_command(args: argparse.Namespace) -> None:
    written = write_model_card(Artifacts(args.repo), args.version, None)
    print(f"Wrote {written}")


def results_table_command(args: argparse.Namespace) -> None:
    """Print the table, or put it into the README between its markers."""
    metrics, readme = args.repo / "metrics", args.repo / "README.md"
    if not args.write:
        print(results_table(metrics))
    elif write_results_table(readme, metrics):
        print(f"Rewrote the results table in {readme} from {metrics}/*.json.")
    else:
        print(f"The results table in {readme} already matches {metrics}/*.json.")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="compress", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_workflows(commands)
    predict = commands.add_parser("predict", help="classify image files with an exported model")
    add_arguments(predict)
    predict.set_defaults(run=predict_command)
    check = commands.add_parser(
        "check-params",
        help="check params.yaml: its schema, model references, input paths; run nothing",
    )
    check.add_argument(
        "path", nargs="?", type=Path, default=PARAMS_FILE, help="the params file (params.yaml)"
    )
    check.set_defaults(run=check_params_command)
    back = commands.add_parser("rollback", help="put an earlier registered version in production")
    back.add_argument("--to", help="version, e.g. v0.0.1 (default: the one before production's)")
    back.add_argument("--repo", type=Path, default=Path("."), help="the repository root")
    back.set_defaults(run=rollback_command)
    approve = commands.add_parser("approve", help="answer a cycle waiting for approval")
    approve.add_argument("flow_run_id", help="the paused cycle's flow run id")
    approve.add_argument("--reject", action="store_true", help="keep production")
    approve.add_argument("--approver", default="", help="who decides (recorded)")
    approve.add_argument("--reason", default="", help="why (recorded)")
    approve.set_defaults(run=approve_command)
    card = commands.add_parser(
        "model-card", help="write the shipped model's card from the pipeline's records"
    )
    card.add_argument(
        "--version",
        help="the registry version it describes: written to registry/model_card.md, not the "
        "workspace's reports/model_card.md (evaluate's out)",
    )
    card.add_argument("--repo", type=Path, default=Path("."), help="the repository root")
    card.set_defaults(run=model_card_command)
    table = commands.add_parser(
        "results-table", help="the README's results table, generated from metrics/*.json"
    )
    table.add_argument(
        "--write", action="store_true", help="rewrite it in README.md instead of printing it"
    )
    table.add_argument("--repo", type=Path, default=Path("."), help="the repository root")
    table.set_defaults(run=results_table_command)
    return top


def main() -> None:
    args = parser().parse_args()
    run_stage(lambda: args.run(args))


if __name__ == "__main__":
    main()
