"""`dvc repro prepare`: stratified splits of the source data, checked by Great Expectations."""

from compress.artifacts import Artifacts
from compress.params_file import load_params
from compress.runner import run_stage
from compress.steps.prepare import prepare


def main() -> None:
    prepare(load_params().data, Artifacts.here())


if __name__ == "__main__":
    run_stage(main)
