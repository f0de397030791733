"""The one catalogue of the pipeline's files: every out, metric and plot of every stage (the
names `dvc.yaml` declares, checked by a test), the inputs the steps read beside them, and the
candidate models `evaluate` and the benchmarks compare. Paths hang off a root, so a test or a
flow points the whole pipeline at another folder without changing directory."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from compress.core.errors import PipelineError

REFERENCE_CANDIDATE = "teacher_fp32"


class _Entry:
    """A path relative to the catalogue's root; `out=True` marks what a stage writes."""

    def __init__(self, relative: str, out: bool = True):
        self.relative, self.out = relative, out

    def __get__(self, catalogue: Artifacts | None, owner: type) -> Path:
        if catalogue is None:
            return Path(self.relative)
        return catalogue.root / self.relative


@dataclass(frozen=True)
class Artifacts:
    root: Path

    # inputs and records that are not a stage's out
    params_file = _Entry("params.yaml", out=False)
    dvc_lock = _Entry("dvc.lock", out=False)
    decisions_log = _Entry("registry/decisions.jsonl", out=False)
    release_card = _Entry("registry/model_card.md", out=False)  # a promoted version's card
    # what a team brings, tracked with `dvc add` / `dvc import-url`; prepare and baseline depend
    # on these folders, so DVC sees every added image and every retrained teacher
    data_input_dir = _Entry("data/input", out=False)
    teacher_input_dir = _Entry("models/input", out=False)
    # prepare
    prepared_dir = _Entry("data/prepared")
    data_checks = _Entry("metrics/data_checks.json")
    data_profile = _Entry("metrics/data_profile.json")
    # baseline
    teacher_pt = _Entry("models/teacher.pt")
    teacher_onnx = _Entry("models/teacher.onnx")
    baseline_metrics = _Entry("metrics/baseline.json")
    baseline_plot = _Entry("plots/baseline/train.csv")
    # validate_teacher
    teacher_gate = _Entry("metrics/teacher_gate.json")
    # teacher_outputs
    teacher_outputs_dir = _Entry("data/teacher_outputs")
    # distill
    student_pt = _Entry("models/student.pt")
    student_onnx = _Entry("models/student.onnx")
    control_dir = _Entry("models/control")
    control_pt = _Entry("models/control/control.pt", out=False)  # inside control_dir
    control_onnx = _Entry("models/control/control.onnx", out=False)
    distill_metrics = _Entry("metrics/distill.json")
    distilled_plot = _Entry("plots/distill/distilled.csv")
    control_plot = _Entry("plots/distill/control.csv")
    # prune
    pruned_pt = _Entry("models/pruned.pt")
    pruned_onnx = _Entry("models/pruned.onnx")
    prune_metrics = _Entry("metrics/prune.json")
    prune_plot = _Entry("plots/prune/rounds.csv")
    # quantize
    quantized_onnx = _Entry("models/quantized.onnx")
    quantized_pt = _Entry("models/quantized.pt")
    teacher_int8_onnx = _Entry("models/teacher_int8.onnx")
    quantize_metrics = _Entry("metrics/quantize.json")
    sensitivity_metrics = _Entry("metrics/sensitivity.json")
    sensitivity_plot = _Entry("plots/quantize/sensitivity.csv")
    sensitivity_png = _Entry("plots/quantize/sensitivity.png")
    # evaluate
    shipped_onnx = _Entry("models/shipped.onnx")
    shipped_json = _Entry("models/shipped.json")
    openvino_dir = _Entry("models/openvino")  # shipped.xml + shipped.bin (OpenVINO IR)
    shipped_ir = _Entry("models/openvino/shipped.xml", out=False)
    report = _Entry("reports/compression.md")
    model_card = _Entry("reports/model_card.md")
    evaluate_metrics = _Entry("metrics/evaluate.json")
    summary_metrics = _Entry(
        "metrics/summary.json"
    )  # the headline figures `dvc metrics show` prints
    pareto_size_plot = _Entry("plots/evaluate/pareto_size.png")
    pareto_latency_plot = _Entry("plots/evaluate/pareto_latency.png")
    candidates_plot = _Entry("plots/evaluate/candidates.csv")
    confusion_plot = _Entry("plots/evaluate/confusion.csv")

    @classmethod
    def here(cls) -> Artifacts:
        """The catalogue of the repository the stage runs in (DVC runs stages from its root)."""
        return cls(Path.cwd())

    @classmethod
    def outs(cls) -> dict[str, Path]:
        """Every out, metric and plot by name, relative to the root (what dvc.yaml declares)."""
        return {
            name: Path(entry.relative)
            for name, entry in vars(cls).items()
            if isinstance(entry, _Entry) and entry.out
        }

    def resolve(self, user_path: str) -> Path:
        """A path the user gave in params.yaml: relative ones are relative to the root."""
        path = Path(user_path).expanduser()
        return path if path.is_absolute() else self.root / path

    def tracked_input(self, user_path: str, param: str, folder: Path) -> Path:
        """A user's file or folder that must lie inside `folder` (a stage dep in dvc.yaml): a path
        elsewhere is invisible to DVC, so a changed file would rerun nothing."""
        path = self.resolve(user_path)
        if path.resolve().is_relative_to(folder.resolve()):
            return path
        inside = self.relative(folder)
        raise PipelineError(
            f"{param} '{user_path}' is outside {inside}/, so DVC cannot see when it changes and "
            f"the pipeline would not rerun on new data or a new file. Bring it in as a tracked "
            f"input: `dvc import-url {user_path} {inside}/<name>` (refreshed by `dvc update`), or "
            f"copy it there and run `dvc add {inside}/<name>`; then set {param}: {inside}/<name> "
            "in params.yaml."
        )

    def relative(self, path: Path) -> str:
        """A path as the metrics record it: relative to the root when inside it."""
        return str(path.relative_to(self.root)) if path.is_relative_to(self.root) else str(path)

    def digests(self, paths: Iterable[Path], algorithm: str) -> dict[str, str]:
        """The digest of each of `paths` that exists, by its path as the metrics record it."""
        return {
            self.relative(path): file_digest(path, algorithm) for path in paths if path.is_file()
        }

    def candidates(self) -> dict[str, Path]:
        """The models every evaluation compares, the fp32 teacher (the reference) first."""
        return {
            REFERENCE_CANDIDATE: self.teacher_onnx,
            "teacher_int8": self.teacher_int8_onnx,
            "control": self.control_onnx,
            "distilled": self.student_onnx,
            "pruned": self.pruned_onnx,
            "quantized": self.quantized_onnx,
        }


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of a file, read in chunks: a teacher may be gigabytes."""
    with path.open("rb") as file:
        return hashlib.file_digest(file, algorithm).hexdigest()
