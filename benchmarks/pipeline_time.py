"""A clean `dvc repro` of two commits, one after the other on this machine: each in its own git
worktree with an empty DVC cache, timed per stage (from DVC's own "Running stage" lines) and
whole, with the peak RSS of the whole run. Prints the Markdown table the README's figures come
from. Run nothing else meanwhile: two torch processes on 2 cores slow each other many times.

    python benchmarks/pipeline_time.py BEFORE_REV [AFTER_REV (default HEAD)]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGE_LINE = re.compile(r"^Running stage '([^']+)'")


def clean_repro(rev: str, scratch: Path) -> tuple[dict[str, float], float, float]:
    """(seconds per stage, whole wall seconds, peak RSS MB) of `dvc repro --force` at `rev`."""
    tree = scratch / rev.replace("/", "_")
    subprocess.run(["git", "worktree", "add", "--detach", str(tree), rev], cwd=ROOT, check=True)
    try:
        environment = os.environ | {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
        started = time.perf_counter()
        process = subprocess.Popen(
            ["dvc", "repro", "--force"],
            cwd=tree,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        marks: list[tuple[str, float]] = []
        for line in process.stdout:
            if found := STAGE_LINE.match(line):
                marks.append((found.group(1), time.perf_counter()))
        _, status, usage = os.wait4(process.pid, 0)
        ended = time.perf_counter()
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"dvc repro at {rev} failed")
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=False)
    ends = [at for _, at in marks[1:]] + [ended]
    stages = {name: end - at for (name, at), end in zip(marks, ends, strict=True)}
    return stages, ended - started, usage.ru_maxrss / 1024


def minutes(seconds: float) -> str:
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("before")
    parser.add_argument("after", nargs="?", default="HEAD")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=ROOT.parent) as scratch:
        runs = {rev: clean_repro(rev, Path(scratch)) for rev in (args.before, args.after)}
    # in the order the later commit runs them; stages only the earlier one has come last
    ordered = reversed(list(runs.values()))
    names = list(dict.fromkeys(name for stages, _, _ in ordered for name in stages))
    print(f"| stage | {' | '.join(runs)} |")
    print(f"|---|{'---|' * len(runs)}")
    for name in names:
        cells = [minutes(stages[name]) if name in stages else "-" for stages, _, _ in runs.values()]
        print(f"| {name} | {' | '.join(cells)} |")
    print(
        f"| **whole `dvc repro`** | {' | '.join(f'**{minutes(w)}**' for _, w, _ in runs.values())} |"
    )
    print(f"| peak RSS | {' | '.join(f'{rss / 1024:.2f} GB' for _, _, rss in runs.values())} |")


if __name__ == "__main__":
    main()
