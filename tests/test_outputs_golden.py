"""``coach learn`` writes byte-identical ``skillbook.json``, ``SKILLBOOK.md`` and ``prompts_out/``
to the files recorded in ``tests/golden/learn/<case>/``, on the shared traces and on planted sets.

This holds on any x86-64 machine because every figure stored in those files is rounded (see
``tests/test_rounding.py``), and it holds across refactorings that keep behaviour. The run time
is fixed with ``SOURCE_DATE_EPOCH``. After a deliberate change of output, rewrite the recorded
files with ``COACH_UPDATE_GOLDEN=1 python -m pytest tests/test_outputs_golden.py`` and review
the diff.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from synth import PlantedConfig, SynthConfig, generate, generate_planted, write_jsonl

from pipeline.cli import main

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).parent / "golden" / "learn"
SHARED_TRACES = ROOT.parent / "shared" / "traces"
OUTPUTS = ("skillbook/skillbook.json", "skillbook/SKILLBOOK.md", "prompts_out")


def _shared(work: Path) -> list[str]:
    if not SHARED_TRACES.is_dir():
        pytest.skip(f"{SHARED_TRACES} is absent")
    (work / "shared").symlink_to(SHARED_TRACES)
    return ["shared"]


def _planted_synth(work: Path) -> list[str]:
    write_jsonl(work / "planted.jsonl", generate(SynthConfig(seed=7)))
    return ["planted.jsonl"]


def _planted_rules(work: Path) -> list[str]:
    write_jsonl(work / "rules.jsonl", generate_planted(PlantedConfig(n_trajectories=2000, seed=3)))
    return ["rules.jsonl"]


CASES: dict[str, Callable[[Path], list[str]]] = {
    "shared_traces": _shared,
    "planted_synth": _planted_synth,
    "planted_rules": _planted_rules,
}


def _files(directory: Path) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    for name in OUTPUTS:
        path = directory / name
        paths = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in paths:
            found[file.relative_to(directory).as_posix()] = file.read_bytes()
    return found


@pytest.mark.parametrize("case", sorted(CASES))
def test_learn_writes_the_recorded_outputs(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1767225600")  # 2026-01-01T00:00:00Z
    monkeypatch.delenv("COACH_CONFIG", raising=False)
    paths = CASES[case](tmp_path)
    result = CliRunner().invoke(main, ["learn", *paths, "-q"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    written = _files(tmp_path)
    assert "skillbook/skillbook.json" in written and any(
        name.startswith("prompts_out/") for name in written
    )
    recorded = GOLDEN / case
    if os.environ.get("COACH_UPDATE_GOLDEN") == "1":
        for name, content in written.items():
            (recorded / name).parent.mkdir(parents=True, exist_ok=True)
            (recorded / name).write_bytes(content)
    expected = _files(recorded)
    assert sorted(written) == sorted(expected)
    for name, content in written.items():
        assert content == expected[name], f"{case}: {name} differs from tests/golden/learn"
