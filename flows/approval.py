"""A person's approval when the promotion policy asks for it: the cycle pauses in Prefect
with the decision shown, resumes on an answer from the UI or `compress approve`, and keeps
production when none comes in time."""

from __future__ import annotations

from prefect import get_run_logger
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
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


def ask_for_approval(decision: dict, settings: RegistryParams) -> dict:
    """Pause the cycle until a person approves or rejects in the Prefect UI or with
    `compress approve <flow-run-id>`, showing the policy's decision; no answer within
    `registry.approval_timeout_hours` keeps production. The answer becomes the action."""
    timeout = max(1, round(settings.approval_timeout_hours * 3600))
    recommended = decision["action"]
    publish_decision(decision, key="model-update-approval", title="Approval asked")
    get_run_logger().info(
        "Waiting up to %d s for approval (the policy says %s: %s)",
        timeout,
        recommended,
        decision["reason"],
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
