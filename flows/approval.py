"""A person's approval when the promotion policy asks for it: the cycle pauses in Prefect
with the decision shown, resumes on an answer from the UI or `compress approve`, and keeps
production when none comes in time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prefect import get_run_logger
from prefect.client.orchestration import get_client
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from prefect.runtime import flow_run
from prefect.settings import PREFECT_API_URL
from pydantic import Field

from compress.config.registry import RegistryParams
from flows.decisions import publish_decision


class Approval(RunInput):
    """What the person asked to approve a promotion answers (Prefect UI or `compress approve`)."""

    approve: bool = Field(description="true: promote the new model; false: keep production")
    approver: str = Field("", description="who decided (recorded with the decision)")
    reason: str = Field("", description="why (recorded with the decision)")


def needs_approval(decision: dict, settings: RegistryParams) -> bool:
    """A person confirms promotions only: every one (`always`) or the uncertain ones; what the
    policy keeps (over budget, less accurate, not better) stays kept."""
    if decision["action"] != "promoted":
        return False
    return settings.approval == "always" or (
        settings.approval == "when_uncertain" and decision["uncertain"]
    )


def announce_approval_route(settings: RegistryParams) -> None:
    """Before any work: when the cycle may pause for a person and no Prefect server is set
    (`PREFECT_API_URL`), it runs on a temporary server that lives only as long as this
    process; say so, and how to run it where the UI can reach it."""
    if settings.approval == "never" or PREFECT_API_URL.value():
        return
    get_run_logger().warning(
        "registry.approval is '%s' and PREFECT_API_URL is not set: this cycle runs on a "
        "temporary Prefect server that stops with this process. If it pauses for approval, "
        "it prints the exact `compress approve` command (with the server's address) to run "
        "from another terminal while it waits. For the Prefect UI and a server that outlives "
        "the cycle, run `prefect server start` in another terminal and `export "
        "PREFECT_API_URL=http://127.0.0.1:4200/api` here first.",
        settings.approval,
    )


def approval_instructions(timeout_s: int) -> str:
    """The exact commands that answer this paused run, with the API address they must reach,
    and when the wait expires."""
    with get_client(sync_client=True) as client:
        api = str(client.api_url).rstrip("/")
    expires = datetime.now(UTC) + timedelta(seconds=timeout_s)
    command = f"PREFECT_API_URL={api} compress approve {flow_run.id}"
    return (
        f"Waiting for approval until {expires.isoformat(timespec='seconds')} "
        f"(registry.approval_timeout_hours; then production stays). From another terminal:\n"
        f"  approve: {command} --approver NAME --reason TEXT\n"
        f"  reject:  {command} --reject --approver NAME --reason TEXT\n"
        f"or in the Prefect UI at {api.removesuffix('/api')}"
    )


def ask_for_approval(decision: dict, settings: RegistryParams) -> dict:
    """Pause the cycle until a person approves or rejects in the Prefect UI or with
    `compress approve <flow-run-id>`, showing the policy's decision; no answer within
    `registry.approval_timeout_hours` keeps production. The answer becomes the action."""
    timeout = max(1, round(settings.approval_timeout_hours * 3600))
    recommended = decision["action"]
    publish_decision(decision, key="model-update-approval", title="Approval asked")
    get_run_logger().warning(
        "The policy says %s: %s\n%s",
        recommended,
        decision["reason"],
        approval_instructions(timeout),
    )
    try:
        answer = pause_flow_run(
            wait_for_input=Approval, timeout=timeout, poll_interval=min(10, timeout)
        )
    except FlowPauseTimeout:
        return {
            "action": "kept",
            "reason": f"no approval within {settings.approval_timeout_hours} h: production stays",
            "approval": {"answer": "timeout", "recommended": recommended},
        }
    verdict = "approved" if answer.approve else "rejected"
    return {
        "action": "promoted" if answer.approve else "kept",
        "reason": f"{verdict} by {answer.approver or 'an approver'}: {answer.reason or '-'} "
        f"(the policy said {recommended}: {decision['reason']})",
        "approval": {
            "answer": verdict,
            "approver": answer.approver,
            "reason": answer.reason,
            "recommended": recommended,
        },
    }
