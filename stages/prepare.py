"""`dvc repro prepare`: stratified splits of the source data, checked by Great Expectations."""

from compress.commands.runner import run_stage
from compress.config.data import DataParams
from compress.config.file import load_sections
from compress.core.artifacts import Artifacts
from compress.steps.prepare import prepare


def main() -> None:
    (data,) = load_sections(DataParams)
    prepare(data, Artifacts.here())


if __name__ == "__main__":
    run_stage(main)
