"""A ``learn`` with nothing new: answered from the last run's ``last_run.json``, with the tables,
analysis and Skillbook read only when asked for, and without loading the analysis stack."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.config import Config
from pipeline.learn import learn
from pipeline.learn_result import SUMMARY_KEYS, UnchangedResult

# What a run with nothing to do must not import (the analysis and rendering stack).
HEAVY = ("duckdb", "jinja2", "numpy", "openai", "polars", "pyarrow", "rich", "scipy", "statsmodels")
# Summary keys that describe what the run itself did: nothing, for a run with nothing to do.
THIS_RUN = ("ingest", "candidates", "changes", "llm_calls", "llm", "timings_s", "unchanged")

# Runs the command line as ``python -m pipeline`` does and reports the heavy modules loaded.
LOADED = """
import atexit, json, runpy, sys
heavy = set(json.loads(sys.argv[1]))
atexit.register(
    lambda: print("LOADED " + json.dumps(sorted({m.split(".")[0] for m in sys.modules} & heavy)),
                  file=sys.stderr)
)
sys.argv = ["coach", *sys.argv[2:]]
runpy.run_module("pipeline", run_name="__main__", alter_sys=True)
"""


def _config(tmp_path: Path, *paths: Path) -> Config:
    return Config(
        paths=tuple(str(p) for p in paths),
        data_dir=tmp_path / "data",
        skillbook_dir=tmp_path / "skillbook",
        out_dir=tmp_path / "prompts",
    )


def _args(tmp_path: Path, planted: Path) -> list[str]:
    return [
        "learn",
        str(planted),
        "--data-dir",
        str(tmp_path / "d"),
        "--skillbook",
        str(tmp_path / "sb"),
        "--out",
        str(tmp_path / "out"),
    ]


def test_an_unchanged_rerun_answers_from_the_last_run(tmp_path: Path, planted: Path) -> None:
    config = _config(tmp_path, planted)
    first = learn(config)
    again = learn(config)
    assert isinstance(again, UnchangedResult) and again.unchanged
    summary, before = again.summary(), first.summary()
    assert list(summary) == list(before) == list(SUMMARY_KEYS)
    assert {k: v for k, v in summary.items() if k not in THIS_RUN} == {
        k: v for k, v in before.items() if k not in THIS_RUN
    }
    # the figures of the store are the last run's; nothing was read, merged or asked this run
    assert summary["ingest"]["store"] == before["ingest"]["store"]
    assert summary["ingest"]["warnings"] == before["ingest"]["warnings"]
    assert set(summary["ingest"]["this_run"].values()) == {0}
    assert before["candidates"] == 2 and summary["candidates"] == 0
    assert not any(summary["changes"].values()) and any(before["changes"].values())
    assert summary["llm_calls"] == 0 and summary["llm"] == {}
    assert summary["unchanged"] and list(summary["timings_s"]) == ["check"]
    assert again.highlights() == json.loads(json.dumps(first.highlights()))
    assert again.skillbook_run_id == first.skillbook_run_id
    assert again.prompts == first.prompts
    # read on first access, with the last run's values
    assert again.traces.counts == first.traces.counts
    assert again.traces.counts["trajectories"] == summary["trajectories"] == 360
    assert again.skillbook.by_status() == first.skillbook.by_status() == summary["skills"]
    assert again.skillbook.version == first.skillbook.version
    assert again.analysis.results.equals(first.analysis.results)
    assert again.analysis.features.height == 0  # the long feature table is not read
    assert not again.merge.changed


def test_a_last_run_without_highlights_means_a_full_run(tmp_path: Path, planted: Path) -> None:
    config = _config(tmp_path, planted)
    learn(config)
    path = config.data_dir / "last_run.json"
    last = json.loads(path.read_text())
    del last["highlights"]
    path.write_text(json.dumps(last))
    assert not learn(config).unchanged
    assert learn(config).unchanged


def test_the_text_report_of_a_rerun_lists_the_same_skills_and_diagnostics(
    tmp_path: Path, planted: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    first = runner.invoke(main, [*_args(tmp_path, planted), "-q"])
    again = runner.invoke(main, [*_args(tmp_path, planted), "-q"])
    assert first.exit_code == again.exit_code == 0, first.output + again.output
    assert again.stdout.startswith("unchanged since the last run")

    def listed(text: str) -> list[str]:
        return [line for line in text.splitlines() if line.startswith(("  [", "      ", "  diag"))]

    assert listed(first.stdout) and any("diagnostic:" in line for line in listed(first.stdout))
    assert listed(again.stdout) == listed(first.stdout)


@pytest.mark.parametrize("as_json", [True, False], ids=["json", "text"])
def test_a_rerun_through_the_command_line_loads_no_analysis_stack(
    tmp_path: Path, planted: Path, monkeypatch: pytest.MonkeyPatch, as_json: bool
) -> None:
    monkeypatch.chdir(tmp_path)
    args = [*_args(tmp_path, planted), *(["--json"] if as_json else [])]
    assert CliRunner().invoke(main, [*args, "-q"]).exit_code == 0
    done = subprocess.run(
        [sys.executable, "-c", LOADED, json.dumps(HEAVY), *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "nothing to do" in done.stderr
    if as_json:
        assert json.loads(done.stdout)["unchanged"] is True
    else:
        assert done.stdout.startswith("unchanged since the last run")
    loaded = [line for line in done.stderr.splitlines() if line.startswith("LOADED ")]
    assert loaded == ["LOADED []"], done.stderr


def test_the_configuration_loads_no_analysis_stack() -> None:
    code = (
        "import json, sys\n"
        "import pipeline, pipeline.config, pipeline.learn, pipeline.cli, pipeline.ingest.discovery\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert not set(json.loads(done.stdout)) & set(HEAVY)


def test_the_package_api_resolves_on_first_use() -> None:
    import pipeline
    import pipeline.ingest
    import pipeline.learn
    from pipeline import Analyzer, Config
    from pipeline.ingest import ingest
    from pipeline.learn import learn as learn_function

    # the stage packages are modules, each with its function on its face
    assert ingest is pipeline.ingest.ingest is sys.modules["pipeline.ingest.reader"].ingest
    assert learn_function is pipeline.learn.learn is learn
    assert Analyzer is sys.modules["pipeline.analyze"].Analyzer
    assert Config is sys.modules["pipeline.config"].Config
    assert set(pipeline.__all__) <= set(dir(pipeline))
    with pytest.raises(AttributeError):
        _ = pipeline.no_such_name
