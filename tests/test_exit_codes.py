"""The exit-code rule of the command line, case by case: 0 done, 1 a domain error (the message
says what and how to fix), 2 bad usage (the message names the option, argument, or settings file
and key), 3 done but this run quarantined input (``ingest``, ``learn``); never a traceback for
an expected failure."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.cli.options import FORMATS, option_of
from pipeline.config import AnalyzerConfig, Config, LLMConfig
from pipeline.errors import SettingError

FIXTURES = Path(__file__).resolve().parent / "fixtures"
# a small chat trace file: 4 good records, 1 duplicate and 3 that are quarantined
SMALL = str(FIXTURES / "chat_small.jsonl")
# Environment variables that are option defaults: unset, so that the cases do not depend on the
# shell they run in.
OPTION_ENV = ("COACH_CONFIG", "COACH_FORMAT", "COACH_MODEL", "COACH_SKILLBOOK", "COACH_OUT")

# Settings files, by name, for the COACH_CONFIG cases.
TOML = {
    "bad.toml": "llm = [\n",
    "unknown.toml": "modle = 'typo'\n",
    "unknown_in_table.toml": "[learn]\nmodle = 'typo'\n",
    "wrong_type.toml": "fdr = 'often'\n",
    "out_of_range.toml": "[learn]\nfdr = 2\n",
    "bad_format.toml": "format = 'nope'\n",
    "bad_section_mode.toml": "section-mode = ['pitfalls=maybe']\n",
    "good.toml": "mode = 'propose'\n[learn]\nmin-support = 5\n",
}


def _inputs(tmp: Path) -> None:
    """The files the cases refer to, under ``tmp``."""
    for name, text in TOML.items():
        (tmp / name).write_text(text)
    (tmp / "corrupt").mkdir()
    (tmp / "corrupt" / "skillbook.json").write_text("{not json")
    (tmp / "book").mkdir()
    shutil.copy(FIXTURES / "skillbooks" / "skillbook_v1.json", tmp / "book" / "skillbook.json")
    (tmp / "empty").mkdir()
    (tmp / "garbage.jsonl").write_text("this is not a trace\n")
    # the good records of SMALL alone: nothing to quarantine
    good = [line for line in Path(SMALL).read_text().splitlines() if '"chat-00' in line]
    (tmp / "clean.jsonl").write_text("\n".join(good[:4]) + "\n")


# Each case: its id, the command line ("{tmp}": the test's temporary directory, also the working
# directory; "{small}": a small chat trace file; "{where}": --data-dir, --skillbook and --out
# under {tmp}), the exit code, the text the output must hold, and the environment.
WHERE = "--data-dir {tmp}/d --skillbook {tmp}/sb --out {tmp}/out"


def _case(
    name: str, command: str, code: int, *needles: str, env: dict[str, str] | None = None
) -> Any:
    return pytest.param(command, env or {}, code, needles, id=name)


CASES = [
    # -- bad usage: unknown names and choices --------------------------------------------------
    _case(
        "learn --format nope", "learn {small} --format nope {where}", 2, "--format", "chat-jsonl"
    ),
    _case("ingest --format nope", "ingest {small} --format nope --data-dir {tmp}/d", 2, "--format"),
    _case("evaluate --format nope", "evaluate {small} --split random --format nope", 2, "--format"),
    _case(
        "COACH_FORMAT=nope",
        "ingest {small} --data-dir {tmp}/d",
        2,
        "--format",
        env={"COACH_FORMAT": "nope"},
    ),
    _case("--mode maybe", "learn {small} --mode maybe {where}", 2, "--mode"),
    _case(
        "--section-mode bad",
        "learn {small} --section-mode pitfalls=maybe {where}",
        2,
        "--section-mode",
    ),
    _case(
        "--llm-structured bad", "learn {small} --llm-structured xml {where}", 2, "--llm-structured"
    ),
    _case("evaluate --split nope", "evaluate {small} --split nope", 2, "--split"),
    _case("diff --format nope", "diff --format nope", 2, "--format"),
    _case("skills export --format nope", "skills export --format nope", 2, "--format"),
    _case("skills list --status nope", "skills list --status nope", 2, "--status"),
    _case(
        "skills list --section nope",
        "skills list --section nope --skillbook {tmp}/book",
        2,
        "--section",
    ),
    _case(
        "skills import --namespace bad",
        "skills import {small} --namespace team --skillbook {tmp}/sb",
        2,
        "--namespace",
    ),
    _case("unknown subcommand", "nope", 2, "No such command 'nope'"),
    _case("unknown option", "learn --nope", 2, "--nope"),
    # -- bad usage: numbers out of range -------------------------------------------------------
    _case("--fdr 2", "learn {small} --fdr 2 {where}", 2, "--fdr"),
    _case("--fdr 0", "analyze --fdr 0 --data-dir {tmp}/d", 2, "--fdr"),
    _case("--ratio 1.5", "evaluate {small} --split random --ratio 1.5", 2, "--ratio"),
    _case("--ratio 0", "evaluate {small} --split random --ratio 0", 2, "--ratio"),
    _case("--min-support 0", "learn {small} --min-support 0 {where}", 2, "--min-support"),
    _case(
        "--half-life-days -1", "learn {small} --half-life-days -1 {where}", 2, "--half-life-days"
    ),
    _case("--max-llm-calls -1", "learn {small} --max-llm-calls -1 {where}", 2, "--max-llm-calls"),
    _case("--max-tokens -1", "learn {small} --max-tokens -1 {where}", 2, "--max-tokens"),
    _case("--max-usd -0.5", "learn {small} --max-usd -0.5 {where}", 2, "--max-usd"),
    _case(
        "--usd-per-1k-input -1",
        "learn {small} --usd-per-1k-input -1 {where}",
        2,
        "--usd-per-1k-input",
    ),
    _case("--llm-timeout 0", "learn {small} --llm-timeout 0 {where}", 2, "--llm-timeout"),
    _case("--llm-retries -1", "learn {small} --llm-retries -1 {where}", 2, "--llm-retries"),
    _case(
        "--llm-concurrency 0", "learn {small} --llm-concurrency 0 {where}", 2, "--llm-concurrency"
    ),
    _case(
        "--max-record-mb 0",
        "ingest {small} --max-record-mb 0 --data-dir {tmp}/d",
        2,
        "--max-record-mb",
    ),
    # -- bad usage: options that conflict or need another --------------------------------------
    _case(
        "--llm-label without --llm", "learn {small} --llm-label {where}", 2, "--llm-label", "--llm"
    ),
    _case(
        "--llm without --model",
        "learn {small} --llm --base-url http://127.0.0.1:9/v1 {where}",
        2,
        "--model",
    ),
    _case("evaluate --train without --test", "evaluate --train {small}", 2, "--test"),
    _case(
        "evaluate --train with --split",
        "evaluate {small} --train {small} --test {small} --split task",
        2,
        "--split",
    ),
    _case("evaluate without input", "evaluate", 2, "--split", "--train"),
    _case(
        "report --since and --since-rev",
        "report --since {small} --since-rev HEAD --data-dir {tmp}/d",
        2,
        "--since-rev",
    ),
    _case("diff with three --git-rev", "diff --git-rev a --git-rev b --git-rev c", 2, "--git-rev"),
    _case("diff without sides", "diff", 2, "OLD", "--git-rev"),
    _case("diff: nonexistent OLD", "diff {tmp}/nope {tmp}", 2, "OLD", "nope"),
    # -- bad usage: missing arguments, paths that do not exist ---------------------------------
    _case("skills show: missing argument", "skills show", 2, "SKILL_ID"),
    _case("skillbook checkout: missing argument", "skillbook checkout", 2, "VERSION"),
    _case(
        "learn: nonexistent path",
        "learn {tmp}/nope {where}",
        2,
        "PATHS",
        "nope: no such file or directory",
    ),
    _case(
        "ingest: glob matching nothing",
        "ingest {tmp}/*.nope --data-dir {tmp}/d",
        2,
        "PATHS",
        "matches no file",
    ),
    _case("learn: no PATHS and no traces/", "learn {where}", 2, "PATHS", "traces/"),
    _case(
        "evaluate --train: nonexistent path",
        "evaluate --train {tmp}/nope --test {small}",
        2,
        "--train",
        "nope",
    ),
    _case(
        "skills import: nonexistent file",
        "skills import {tmp}/nope.json --skillbook {tmp}/sb",
        2,
        "PATH",
        "nope.json",
    ),
    _case(
        "skillbook diff: nonexistent ref",
        "skillbook diff {tmp}/nope --skillbook {tmp}/book",
        2,
        "BEFORE",
        "nope",
    ),
    _case(
        "report --since: nonexistent path",
        "report --since {tmp}/nope --data-dir {tmp}/d",
        2,
        "--since",
        "nope",
    ),
    _case(
        "render --templates: nonexistent",
        "render --templates {tmp}/nope --skillbook {tmp}/book --out {tmp}/out --data-dir {tmp}/d",
        2,
        "--templates",
    ),
    _case(
        "render --base-prompt: nonexistent",
        "render --base-prompt {tmp}/nope.md --skillbook {tmp}/book --out {tmp}/out --data-dir {tmp}/d",
        2,
        "--base-prompt",
    ),
    _case(
        "--llm-template: nonexistent",
        "learn {small} --llm-template {tmp}/nope.j2 {where}",
        2,
        "--llm-template",
    ),
    # -- bad usage: the settings file -----------------------------------------------------------
    _case(
        "COACH_CONFIG: no such file",
        "learn {small} {where}",
        2,
        "COACH_CONFIG",
        "nope.toml",
        env={"COACH_CONFIG": "{tmp}/nope.toml"},
    ),
    _case(
        "settings: not TOML",
        "learn {small} {where}",
        2,
        "bad.toml",
        "not a valid TOML file",
        env={"COACH_CONFIG": "{tmp}/bad.toml"},
    ),
    _case(
        "settings: unknown key",
        "learn {small} {where}",
        2,
        "unknown.toml",
        "'modle'",
        env={"COACH_CONFIG": "{tmp}/unknown.toml"},
    ),
    _case(
        "settings: unknown key in [learn]",
        "learn {small} {where}",
        2,
        "unknown_in_table.toml",
        "[learn] 'modle'",
        env={"COACH_CONFIG": "{tmp}/unknown_in_table.toml"},
    ),
    _case(
        "settings: wrong type",
        "learn {small} {where}",
        2,
        "wrong_type.toml",
        "'fdr'",
        "--fdr",
        env={"COACH_CONFIG": "{tmp}/wrong_type.toml"},
    ),
    _case(
        "settings: out of range",
        "learn {small} {where}",
        2,
        "out_of_range.toml",
        "[learn] 'fdr'",
        env={"COACH_CONFIG": "{tmp}/out_of_range.toml"},
    ),
    _case(
        "settings: unknown format",
        "ingest {small} --data-dir {tmp}/d",
        2,
        "bad_format.toml",
        "'format'",
        env={"COACH_CONFIG": "{tmp}/bad_format.toml"},
    ),
    _case(
        "settings: bad section mode",
        "learn {small} {where}",
        2,
        "bad_section_mode.toml",
        "'section-mode'",
        env={"COACH_CONFIG": "{tmp}/bad_section_mode.toml"},
    ),
    # -- domain errors ---------------------------------------------------------------------------
    _case(
        "corrupt skillbook.json",
        "skills list --skillbook {tmp}/corrupt",
        1,
        "corrupt/skillbook.json",
        "cannot read the Skillbook",
    ),
    _case(
        "render: corrupt skillbook.json",
        "render --skillbook {tmp}/corrupt --out {tmp}/out --data-dir {tmp}/d",
        1,
        "corrupt/skillbook.json",
    ),
    _case(
        "no such skill",
        "skills show sk-zzz --skillbook {tmp}/book",
        1,
        "sk-zzz",
        "coach skills list",
    ),
    _case(
        "version not kept",
        "skillbook checkout v99 --skillbook {tmp}/book",
        1,
        "version 99",
        "not kept",
    ),
    _case("analyze before ingest", "analyze --data-dir {tmp}/d", 1, "coach ingest"),
    _case("directory without traces", "learn {tmp}/empty {where}", 1, "empty", "no trace files"),
    _case(
        "file of no known format, --strict",
        "ingest {tmp}/garbage.jsonl --strict --data-dir {tmp}/d",
        1,
        "garbage.jsonl",
        "1 record quarantined",
        "--format",
    ),
    _case(
        "ingest --strict with quarantined records",
        "ingest {small} --strict --data-dir {tmp}/d",
        1,
        "3 records quarantined",
        "nothing was written",
        "line 3: invalid JSON",
    ),
    _case(
        "learn --strict with quarantined records",
        "learn {small} --strict {where}",
        1,
        "3 records quarantined",
        "nothing was written",
    ),
    # -- done, with quarantined input ------------------------------------------------------------
    _case(
        "ingest quarantining records",
        "ingest {small} --data-dir {tmp}/d",
        3,
        "4 ingested",
        "this run quarantined 3 records",
        "{tmp}/d/tables/quarantine.jsonl",
    ),
    _case("learn quarantining records", "learn {small} {where}", 3, "prompts:", "quarantined 3"),
    _case("learn quarantining records, quiet", "learn {small} -q {where}", 3, "prompts:"),
    _case(  # a file that gave nothing is an error, not "done, but see the quarantine"
        "file of no known format: quarantined whole",
        "ingest {tmp}/garbage.jsonl --data-dir {tmp}/d",
        1,
        "garbage.jsonl",
        "1 quarantined",
        "nothing ingested, all 1 record quarantined",
        "none recognises it",
    ),
    _case(  # learn too: it learns from the rest, then says which file gave nothing
        "learn with a file of no known format",
        "learn {tmp}/garbage.jsonl {tmp}/clean.jsonl {where}",
        1,
        "prompts:",
        "garbage.jsonl: nothing ingested, all 1 record quarantined",
        "none recognises it",
    ),
    _case(
        "ingest with a settings file, quarantining records",
        "ingest {small} -q --data-dir {tmp}/d",
        3,
        "4 ingested",
        env={"COACH_CONFIG": "{tmp}/good.toml"},
    ),
    # -- success ---------------------------------------------------------------------------------
    _case("learn a small file", "learn {tmp}/clean.jsonl -q {where}", 0, "prompts:"),
    _case("learn --strict, nothing quarantined", "learn {tmp}/clean.jsonl --strict -q {where}", 0),
    _case(
        "ingest with a settings file",
        "ingest {tmp}/clean.jsonl -q --data-dir {tmp}/d",
        0,
        "4 ingested",
        env={"COACH_CONFIG": "{tmp}/good.toml"},
    ),
    _case(
        "learn with a settings file",
        "learn {tmp}/clean.jsonl -q {where}",
        0,
        "prompts:",
        env={"COACH_CONFIG": "{tmp}/good.toml"},
    ),
    _case("skills list", "skills list --skillbook {tmp}/book", 0, "sk-"),
    _case("formats", "formats", 0, "chat-jsonl"),
]


def _fill(text: str, tmp: Path) -> str:
    return text.replace("{tmp}", str(tmp)).replace("{small}", SMALL)


@pytest.mark.parametrize(("command", "env", "code", "needles"), CASES)
def test_exit_code(
    command: str,
    env: dict[str, str],
    code: int,
    needles: tuple[str, ...],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _inputs(tmp_path)
    monkeypatch.chdir(tmp_path)  # no settings file nor traces/ of the checkout
    for name in OPTION_ENV:
        monkeypatch.delenv(name, raising=False)
    args = [_fill(a, tmp_path) for a in command.replace("{where}", WHERE).split()]
    result = CliRunner().invoke(main, args, env={k: _fill(v, tmp_path) for k, v in env.items()})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    assert result.exit_code == code, result.output
    for needle in needles:
        assert _fill(needle, tmp_path) in result.output
    if code in (1, 2):
        assert "Error: " in result.output
    if "--strict" in args and code == 1:
        # failed before anything was written: no tables, Skillbook or prompts
        assert not any((tmp_path / name).exists() for name in ("d/tables", "sb", "out"))


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["learn", SMALL, "--format", "nope"], 2, "'--format'"),
        (["skills", "list", "--skillbook", "corrupt"], 1, "cannot read the Skillbook"),
    ],
    ids=["bad usage", "domain error"],
)
def test_exit_code_of_the_process(args: list[str], code: int, needle: str, tmp_path: Path) -> None:
    """The same through a real process: the status, and the message on stderr alone."""
    _inputs(tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in OPTION_ENV}
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", *args, "--data-dir", str(tmp_path / "d")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == code, done.stderr
    assert needle in done.stderr and "Traceback" not in done.stderr
    assert done.stdout == ""


def test_exit_3_of_the_process(tmp_path: Path) -> None:
    """Done, but quarantined: the status is 3, the summary on stdout, the pointer to the
    quarantine on stderr; the quarantine is committed with the tables."""
    env = {k: v for k, v in os.environ.items() if k not in OPTION_ENV}
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "ingest", SMALL, "--data-dir", str(tmp_path / "d")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 3, done.stderr
    assert "3 quarantined" in done.stdout
    assert "this run quarantined 3 records" in done.stderr and "Traceback" not in done.stderr
    assert len((tmp_path / "d" / "tables" / "quarantine.jsonl").read_text().splitlines()) == 3


def test_format_choices_are_the_adapters() -> None:
    from pipeline.ingest.formats import ADAPTERS

    assert tuple(a.NAME for a in ADAPTERS) == FORMATS


def _learn_options() -> set[str]:
    assert isinstance(main, click.Group)
    command = main.commands["learn"]
    return {opt for p in command.params for opt in p.opts + p.secondary_opts}


@pytest.mark.parametrize(
    ("build", "setting"),
    [
        (lambda: Config(mode="sometimes"), "mode"),
        (lambda: Config(section_modes=(("pitfalls", "maybe"),)), "section_modes"),
        (lambda: Config(half_life_days=0), "half_life_days"),
        (lambda: Config(analyzer=AnalyzerConfig(fdr=1)), "fdr"),
        (lambda: Config(analyzer=AnalyzerConfig(min_support=0)), "min_support"),
        (lambda: Config(max_record_bytes=0), "max_record_bytes"),
        (lambda: LLMConfig(structured="xml"), "structured"),
        (lambda: LLMConfig(max_calls=-1), "max_calls"),
        (lambda: LLMConfig(max_tokens=-1), "max_tokens"),
        (lambda: LLMConfig(max_usd=-1), "max_usd"),
        (lambda: LLMConfig(usd_per_1k_input=-1), "usd_per_1k_input"),
        (lambda: LLMConfig(usd_per_1k_output=-1), "usd_per_1k_output"),
        (lambda: LLMConfig(backoff_s=-1), "backoff_s"),
        (lambda: LLMConfig(label=True), "label"),
        (lambda: LLMConfig(enabled=True), "model"),
        (lambda: LLMConfig(concurrency=0), "concurrency"),
        (lambda: LLMConfig(max_retries=-1), "max_retries"),
        (lambda: LLMConfig(timeout_s=0), "timeout_s"),
    ],
)
def test_each_setting_error_names_an_option_of_learn(
    build: Callable[[], object], setting: str
) -> None:
    """The library names the setting; the command line maps it to the option of that name."""
    with pytest.raises(SettingError) as caught:
        build()
    assert caught.value.setting == setting
    assert option_of(setting) in _learn_options()
