"""The registry's decision log, registry/decisions.jsonl: one JSON line per promotion, keep,
rollback and failure, committed with each promotion. It is rewritten whole through an atomic
rename, so a kill leaves the old log or the new one, never a torn line; a torn line left by
anything else is skipped and reported, not fatal. It also remembers what a person decided: a
model rolled back from production or rejected at approval is never promoted automatically
again."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from compress.core import atomic

log = logging.getLogger(__name__)


def read_decisions(path: Path) -> list[dict]:
    """Every whole decision in order; a line that is not a JSON object is skipped with a
    warning naming its line number."""
    if not path.is_file():
        return []
    decisions = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        try:
            decision = json.loads(line)
        except json.JSONDecodeError:
            decision = None
        if isinstance(decision, dict):
            decisions.append(decision)
        elif line.strip():
            log.warning("%s line %d is not a whole decision, skipped: %.80s", path, number, line)
    return decisions


def append_decision(path: Path, decision: dict) -> None:
    """The log with one more line, written to a temporary file and renamed into place."""
    existing = path.read_text() if path.is_file() else ""
    if existing and not existing.endswith("\n"):
        existing += "\n"  # a torn line from elsewhere stays on its own line
    atomic.write_text(path, existing + json.dumps(decision, sort_keys=True) + "\n")


def barred_models(decisions: list[dict]) -> dict[str, dict]:
    """md5 of every model a person took out of production (`compress rollback`) or rejected
    at approval -> the decision that did it. Rolling back *to* a model lifts its bar: a person
    put it back."""
    barred: dict[str, dict] = {}
    for decision in decisions:
        if decision.get("action") == "rolled_back":
            if decision.get("from_md5"):
                barred[decision["from_md5"]] = decision
            barred.pop(decision.get("md5"), None)
        elif (decision.get("approval") or {}).get("answer") == "rejected":
            barred[decision["figures"]["new"]["md5"]] = decision
    return barred


def keep_if_barred(decision: dict, barred: dict[str, dict]) -> dict:
    """A promotion of a barred model becomes a keep naming the earlier decision; anything else
    is returned as it is. Checked before approval, so a rejected model is not asked about
    again."""
    md5 = decision.get("figures", {}).get("new", {}).get("md5")
    if decision["action"] != "promoted" or md5 not in barred:
        return decision
    earlier = barred[md5]
    if earlier["action"] == "rolled_back":
        clause = "rolled_back_before"
        what = (
            f"rolled back from production ({earlier['reason']}); `compress rollback --to "
            f"{earlier['from_version']}` serves it again"
        )
    else:
        approval = earlier["approval"]
        clause = "rejected_before"
        what = (
            f"rejected by {approval.get('approver') or 'an approver'} "
            f"({approval.get('reason') or 'no reason given'})"
        )
    return decision | {
        "action": "kept",
        "clause": clause,
        "reason": f"the new model (md5 {md5}) was {what}, at {earlier['time']}: production "
        "stays, without asking again; change the data, teacher or recipe for another model",
        "uncertain": False,
        "policy_said": {"clause": decision["clause"], "reason": decision["reason"]},
    }
