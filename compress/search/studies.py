"""Which study a search runs: the named one resumed, or with `--fresh` a new one beside it, and
whether the budget is already spent (then the search says so instead of quietly rewriting its
report from the old trials)."""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.storages.journal import JournalFileBackend, JournalStorage

DONE = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL)


def fresh_study_name(journal: Path, name: str) -> str:
    """`name` if the journal has no such study, else the first free `name-2`, `name-3`, ...:
    the finished study and its DVC experiments (`<study>-t<n>`) stay as they are."""
    if not journal.is_file():
        return name
    taken = set(optuna.get_all_study_names(JournalStorage(JournalFileBackend(str(journal)))))
    candidate, number = name, 1
    while candidate in taken:
        number += 1
        candidate = f"{name}-{number}"
    return candidate


def finished_trials(study: optuna.Study) -> int:
    """Trials that count against max_trials: finished and not queued again."""
    trials = study.get_trials(deepcopy=False, states=DONE)
    return sum(1 for trial in trials if not trial.user_attrs.get("requeued"))


def budget_spent(study: optuna.Study, max_trials: int) -> str | None:
    """A paragraph when the study has no trial left to run, else None."""
    done = finished_trials(study)
    if done < max_trials:
        return None
    name = study.study_name
    return (
        f"Study '{name}' already has {done} finished trials (max_trials {max_trials}): no new "
        f"trial runs; the report is rewritten from them. For new trials start a fresh study "
        f"beside it (`compress search --study {name} --fresh`) or raise the budget "
        f"(`compress search --study {name} --trials {done + 4}`)."
    )
