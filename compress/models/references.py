"""Whether a model reference names a model that exists, decided from the registries' name lists
(torchvision, timm) or the module's import spec, without building anything: `compress
check-params` names an unknown architecture and its close names before any stage runs."""

from __future__ import annotations

import difflib
import importlib.util

from compress.models.builders import available_archs, split_reference


def _unknown(name: str, param: str, shown: str, names: list[str], listing: str) -> str:
    close = difflib.get_close_matches(name, names, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return f"{param} '{shown}' names no model.{hint} {listing}"


def reference_problem(reference: str, param: str) -> str | None:
    """What is wrong with `reference`, or None when it resolves."""
    kind, name = split_reference(reference)
    if kind == "torchvision" and name not in available_archs():
        return _unknown(
            name,
            param,
            reference,
            available_archs(),
            "torchvision's classification models: "
            '`python -c "import torchvision; print(torchvision.models.list_models())"`.',
        )
    if kind == "timm":
        import timm  # only for a timm reference: importing timm costs seconds

        if name not in timm.list_models():
            return _unknown(
                name,
                param,
                reference,
                timm.list_models(),
                "timm's models: `python -c \"import timm; print(timm.list_models('*mobile*'))\"`.",
            )
    if kind == "factory":
        module = name.partition(":")[0]
        try:
            found = importlib.util.find_spec(module)
        except ModuleNotFoundError:
            found = None
        if found is None:
            return (
                f"{param} '{reference}': module '{module}' is not importable from the repository "
                "root; give package.module:function of a module in the repository or an "
                "installed package."
            )
    return None
