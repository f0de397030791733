"""`python -m compress.check_params [params.yaml]`: validate a params file against the schema of
every stage without running anything (exit code 1 and one paragraph per problem if invalid)."""

from __future__ import annotations

import argparse
from pathlib import Path

from compress.params import PARAMS_FILE, SECTIONS, load_params
from compress.runner import run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("path", nargs="?", type=Path, default=PARAMS_FILE)
    path = parser.parse_args().path
    load_params(path)
    print(f"'{path}' is valid: sections {', '.join(SECTIONS)}.")


if __name__ == "__main__":
    run_stage(main)
