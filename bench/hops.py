"""Function hops from a trace file to a prompt line: how far one trajectory travels through
coach's code in ``coach learn``.

Runs ``learn`` on one file (default: the shipped tau2 airline results) under ``sys.setprofile``
and records the stack of coach's own functions (frames whose file is under ``pipeline/``) at two
moments: when the format adapter of the file is first entered (A: the trajectory is read), and
when the first prompt file is written (B: its prompt line is written). The two stacks share a
prefix down to the function that runs the stages; below it the trajectory goes down stack A,
back up, through the functions called at that level between A and B (the stages; not lambdas,
generator expressions, comprehensions or constructors, each function once), and down stack B:

    hops = (len(A) - shared) + stage calls between A and B + (len(B) - shared)

Prints the hops, the files they pass through, and both stacks.

    python bench/hops.py [TRACE_FILE]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = str(ROOT / "pipeline")
DEFAULT = ROOT / "traces" / "tau2" / "airline-claude-sonnet-4-5.json"


def _stack(frame: FrameType | None) -> list[str]:
    names: list[str] = []
    while frame is not None:
        if frame.f_code.co_filename.startswith(PACKAGE):
            where = Path(frame.f_code.co_filename).relative_to(ROOT).as_posix()
            names.append(f"{where}:{frame.f_code.co_qualname}")
        frame = frame.f_back
    return names[::-1]


def main(path: Path) -> None:
    """Measure and print the hops of :func:`pipeline.learn.learn` on ``path``."""
    from pipeline.config import Config
    from pipeline.learn import learn

    moments: dict[str, list[str]] = {}
    level_calls: list[tuple[int, str]] = []  # (depth, function) of every call, in order

    def profile(frame: FrameType, event: str, _arg: Any) -> None:
        if event != "call" or not frame.f_code.co_filename.startswith(PACKAGE):
            return
        stack = _stack(frame)
        level_calls.append((len(stack), stack[-1]))
        here = frame.f_code.co_filename
        if "A" not in moments and "/ingest/formats/" in here and frame.f_code.co_name == "read":
            moments["A"] = stack
            level_calls.append((-1, "A"))
        if "B" not in moments and frame.f_code.co_name == "atomic_write":
            target = frame.f_locals.get("path")
            if target is not None and Path(target).suffix == ".md" and "prompts" in str(target):
                moments["B"] = stack
                level_calls.append((-1, "B"))

    with tempfile.TemporaryDirectory() as tmp:
        config = Config(
            paths=(str(path),),
            data_dir=Path(tmp) / "data",
            skillbook_dir=Path(tmp) / "skillbook",
            out_dir=Path(tmp) / "prompts",
        )
        sys.setprofile(profile)
        try:
            learn(config)
        finally:
            sys.setprofile(None)
    a, b = moments["A"], moments["B"]
    shared = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), len(a))
    start = level_calls.index((-1, "A"))
    end = level_calls.index((-1, "B"))
    # the functions the stage runner calls between A and B; lambdas, generator expressions,
    # comprehensions and constructors hand nothing on
    stages = list(
        dict.fromkeys(
            f
            for depth, f in level_calls[start:end]
            if depth == shared + 1
            and not f.rsplit(".", 1)[-1].split(":")[-1].startswith("<")
            and not f.endswith("__init__")
        )
    )
    stage_calls = len(stages) - 1  # the call holding B is counted in stack B
    hops = (len(a) - shared) + stage_calls + (len(b) - shared)
    files = sorted({f.split(":")[0] for f in a[shared - 1 :] + b[shared - 1 :] + stages})
    print(f"{hops} function hops through {len(files)} files ({path})")
    print("read (A):", " -> ".join(a[shared - 1 :]))
    print("stages between:", ", ".join(stages))
    print("write (B):", " -> ".join(b[shared - 1 :]))
    print("files:", ", ".join(files))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT)
