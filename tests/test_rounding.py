"""The figures stored in the Skillbook (``skillbook.json``, its version snapshots and run log,
``SKILLBOOK.md``) and in the prompts (``prompts_out/``) are rounded, so that these files are
byte-identical on any x86-64 machine although the Analyzer's floats differ between CPUs in their
last digits (see tests/test_evaluate_equivalence.py).

Where the rounding happens, to 6 decimal places: the evidence (``pipeline.extract``, rates,
lift, odds ratio and interval, p and q), the observations' log odds ratio and standard error
and the drift figures (``pipeline.skillbook.drift``), the held-out validations
(``pipeline.skillbook.decisions.record_validation``) and failure-cluster shares
(``pipeline.distill_items``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from synth import SynthConfig, generate, write_jsonl

from pipeline.analyze import Analyzer
from pipeline.cli import main
from pipeline.config import Config
from pipeline.learn import learn
from pipeline.learn_result import LearnResult

DECIMALS = 6
# A relative change far below the rounding step (1e-6 absolute on figures of order 1 and
# below), of the size by which closed-form statistics differ between CPUs (a few ulps).
NUDGE = 1e-12


def _floats(value: Any, path: str = "") -> Iterator[tuple[str, float]]:
    """Every float in a JSON value, with its path (``skills[].evidence.odds_ratio``)."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _floats(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for item in value:
            yield from _floats(item, f"{path}[]")
    elif isinstance(value, float):
        yield path, value


def _stored_json(skillbook: Path) -> Iterator[tuple[str, Any]]:
    """(file name, content) of every JSON document kept in a Skillbook directory."""
    yield "skillbook.json", json.loads((skillbook / "skillbook.json").read_text())
    for snapshot in sorted((skillbook / "versions").glob("*.json")):
        yield f"versions/{snapshot.name}", json.loads(snapshot.read_text())
    for number, line in enumerate((skillbook / "runs.jsonl").read_text().splitlines(), 1):
        yield f"runs.jsonl:{number}", json.loads(line)


def _config(root: Path, *inputs: Path) -> Config:
    return Config(
        paths=tuple(str(p) for p in inputs),
        data_dir=root / "data",
        skillbook_dir=root / "skillbook",
        out_dir=root / "prompts",
    )


@pytest.fixture(scope="module")
def more(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Runs of other tasks of the planted domain (another seed)."""
    path = tmp_path_factory.mktemp("more") / "more.jsonl"
    return write_jsonl(path, generate(SynthConfig(seed=8, n_tasks=60)))


def test_every_stored_float_has_at_most_six_decimals(
    tmp_path: Path, planted: Path, more: Path
) -> None:
    """Two learning runs (the second updates the evidence and adds observations), then a
    held-out validation recorded by ``coach evaluate --apply``."""
    learn(_config(tmp_path, planted))
    learn(_config(tmp_path, planted, more))
    skillbook = tmp_path / "skillbook"
    result = CliRunner().invoke(
        main,
        [
            *("evaluate", "--train", str(planted), "--test", str(more)),
            *("--skillbook", str(skillbook), "--apply", "--json", "-q"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["recorded"]
    seen: set[str] = set()
    for name, document in _stored_json(skillbook):
        for path, value in _floats(document):
            seen.add(path)
            assert value == round(value, DECIMALS), (name, path, value)
    # every kind of stored figure was there to be checked
    assert {
        "skills[].evidence.odds_ratio",
        "skills[].evidence.ci_low",
        "skills[].evidence.p_value",
        "skills[].evidence.q_value",
        "skills[].evidence.rate_with",
        "skills[].evidence.lift",
        "skills[].observations[].log_or",
        "skills[].observations[].se",
        "skills[].history[].figures.ci_high",
        "skills[].validation.odds_ratio",
        "skills[].validation.p_value",
        "skills[].validation.rate_with",
        "skills[].history[].figures.ci_low",
    } <= seen


def _outputs(root: Path) -> dict[str, bytes]:
    """The Skillbook directory and the prompts directory, file by file."""
    return {
        str(path.relative_to(root)): path.read_bytes()
        for directory in (root / "skillbook", root / "prompts")
        for path in sorted(directory.rglob("*"))
        if path.is_file() and not path.name.startswith(".")
    }


@pytest.mark.parametrize("nudge", [NUDGE, -NUDGE], ids=["up", "down"])
def test_the_last_digits_of_the_figures_change_no_stored_byte(
    tmp_path: Path, planted: Path, more: Path, monkeypatch: pytest.MonkeyPatch, nudge: float
) -> None:
    """Every float the Analyzer computes for a tested feature (rates, intervals, odds ratios,
    p-values, before its q-values and statuses are derived) moved by a relative ``nudge``: the
    Skillbook, SKILLBOOK.md and the prompts stay byte for byte the same, over a first run and an
    update."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1790000000")
    finish = Analyzer._finish

    def run(name: str, factor: float) -> tuple[dict[str, bytes], list[LearnResult]]:
        def nudged(self: Analyzer, rows: list[dict[str, object]]) -> object:
            moved = [
                {k: v * factor if isinstance(v, float) else v for k, v in row.items()}
                for row in rows
            ]
            return finish(self, moved)

        monkeypatch.setattr(Analyzer, "_finish", nudged)
        # the same input paths (they are recorded in the run log), a directory of its own
        results = [learn(_config(tmp_path / name, planted))]
        results.append(learn(_config(tmp_path / name, planted, more)))
        return _outputs(tmp_path / name), results

    plain, plain_results = run("plain", 1.0)
    moved, moved_results = run("moved", 1.0 + nudge)
    # the nudge reached the figures; and there are skills and prompts to compare
    for before, after in zip(plain_results, moved_results, strict=True):
        assert before.analysis.results["p_value"].to_list() != (
            after.analysis.results["p_value"].to_list()
        )
    assert plain_results[-1].skillbook.by_status()["active"] >= 2
    assert any(name.endswith(".md") and name.startswith("prompts/") for name in plain)
    assert sorted(moved) == sorted(plain)
    for name, content in plain.items():
        assert moved[name] == content, name
