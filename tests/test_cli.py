"""The coach command line through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from pipeline.cli import main


def _commands() -> list[str]:
    assert isinstance(main, click.Group)
    return sorted(main.commands)


@pytest.mark.parametrize("command", _commands())
def test_every_command_has_help_with_an_example(command: str) -> None:
    result = CliRunner().invoke(main, [command, "--help"])
    assert result.exit_code == 0
    assert "Example:" in result.output


def test_learn_json_summary(tmp_path: Path, planted: Path) -> None:
    result = CliRunner().invoke(
        main,
        [
            "learn",
            str(planted),
            "--json",
            "-q",
            "--data-dir",
            str(tmp_path / "d"),
            "--skillbook",
            str(tmp_path / "sb"),
            "--out",
            str(tmp_path / "out"),
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["trajectories"] == 360 and summary["quarantined"] == 0
    assert summary["skills"]["active"] == 2 and summary["llm_calls"] == 0
    assert summary["features_tested"] >= summary["candidates"] == 2
    assert summary["skillbook_version"] == 1
    assert summary["prompts"] == [str(tmp_path / "out" / "domain-travel.md")]
    assert (tmp_path / "sb" / "skillbook.json").exists()
    assert (tmp_path / "sb" / "SKILLBOOK.md").exists()
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["skillbook_version"] == 1
    assert len(manifest["prompts"]["domain-travel.md"]["skill_ids"]) == 2


def test_stage_commands_reach_the_same_skillbook(tmp_path: Path, planted: Path) -> None:
    runner = CliRunner()
    data = ["--data-dir", str(tmp_path / "d")]
    assert runner.invoke(main, ["ingest", str(planted), "-q", *data]).exit_code == 0
    assert runner.invoke(main, ["analyze", "-q", *data]).exit_code == 0
    extracted = runner.invoke(main, ["extract", "--json", *data])
    assert extracted.exit_code == 0
    assert len(json.loads(extracted.stdout)["candidates"]) == 2
    merged = runner.invoke(
        main,
        [
            "merge",
            "--json",
            *data,
            "--skillbook",
            str(tmp_path / "sb"),
            "--out",
            str(tmp_path / "out"),
        ],
    )
    assert merged.exit_code == 0, merged.output
    assert json.loads(merged.stdout)["skills"]["active"] == 2
    rendered = runner.invoke(
        main,
        ["render", *data, "--skillbook", str(tmp_path / "sb"), "--out", str(tmp_path / "out2")],
    )
    assert rendered.exit_code == 0
    assert "explicit yes" in (tmp_path / "out2" / "domain-travel.md").read_text()


def test_missing_path_is_a_clear_domain_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["learn", str(tmp_path / "nope"), "-q", "--data-dir", str(tmp_path / "d")]
    )
    assert result.exit_code == 2  # a PATHS argument that does not exist is bad usage
    assert "no such file or directory" in result.output
    assert "Traceback" not in result.output


def test_bad_option_is_usage_error() -> None:
    result = CliRunner().invoke(main, ["learn", "--fdr", "2"])
    assert result.exit_code == 2


def test_analyze_before_ingest_says_what_to_do(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["analyze", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "coach ingest" in result.output
