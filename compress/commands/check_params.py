"""`compress check-params`: the params file against its schema, then what the schema cannot see
and the stages would fail on later: model references that name no model, and input paths outside
the folders DVC tracks or not there yet. Every problem is named at once, before any work."""

from __future__ import annotations

from pathlib import Path

from compress.config.distill import AUTO_STUDENT, TEACHER_STUDENT
from compress.config.params import SECTIONS, Params, load_params
from compress.core.artifacts import Artifacts
from compress.core.errors import PipelineError
from compress.models.references import reference_problem


def model_problems(params: Params) -> list[str]:
    references = {}
    if not params.teacher.onnx:  # an ONNX teacher is measured as it is: no architecture
        references["teacher.arch"] = params.teacher.arch
    if params.distill.student not in (TEACHER_STUDENT, AUTO_STUDENT):  # the teacher, cut
        references["distill.student"] = params.distill.student
    problems = (reference_problem(ref, param) for param, ref in references.items())
    return [problem for problem in problems if problem]


def input_paths(params: Params, artifacts: Artifacts) -> dict[str, tuple[str, Path]]:
    """Each input path the params name: (param, its value) -> the folder DVC tracks for it."""
    models = artifacts.teacher_input_dir
    named = {
        "teacher.checkpoint": (params.teacher.checkpoint, models),
        "teacher.onnx": (params.teacher.onnx, models),
        "distill.student_checkpoint": (params.distill.student_checkpoint, models),
    }
    if params.data.source in ("imagefolder", "cifar10"):
        named["data.path"] = (params.data.path, artifacts.data_input_dir)
    for index, entry in enumerate(params.evaluate.extra_candidates):
        named[f"evaluate.extra_candidates[{index}]"] = (entry, models)
    return {param: (value, folder) for param, (value, folder) in named.items() if value}


def path_findings(params: Params, artifacts: Artifacts) -> tuple[list[str], list[str]]:
    """(problems, where the stages will look) for every input path."""
    problems, found = [], []
    for param, (value, folder) in input_paths(params, artifacts).items():
        try:
            path = artifacts.tracked_input(value, param, folder)
        except PipelineError as error:
            problems.append(str(error))
            continue
        shown = artifacts.relative(path)
        if path.exists():
            found.append(f"{param}: the stages read '{shown}' (it exists)")
        else:
            problems.append(
                f"{param}: the stages will read '{shown}', which does not exist: put it there "
                f"and `dvc add {artifacts.relative(folder)}/<name>`, or `dvc pull` it."
            )
    return problems, found


def check_params(path: Path) -> str:
    """What a valid file resolves to, as one line; a PipelineError naming every problem."""
    params = load_params(path)
    artifacts = Artifacts(path.resolve().parent)
    problems, found = path_findings(params, artifacts)
    problems = model_problems(params) + problems
    if problems:
        raise PipelineError(f"'{path}' passes its schema, but: " + " ".join(problems))
    inputs = f"; {'; '.join(found)}" if found else ""
    return f"'{path}' is valid: sections {', '.join(SECTIONS)}{inputs}."
