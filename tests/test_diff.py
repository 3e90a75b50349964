"""coach diff: skills added/changed/retired, prompt line diffs, git revisions, exit codes."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.render import (
    PromptGenerator,
    diff_snapshots,
    markdown_summary,
    save_skillbook,
    snapshot_from_git,
    snapshot_from_path,
)
from pipeline.skillbook import Skill, Skillbook

BASE = "You are a travel agent.\n\nFollow the policy."


def _evidence(odds_ratio: float, q: float, n_with: int = 40) -> dict[str, object]:
    return {
        "n_with": n_with,
        "n_without": 200,
        "successes_with": 10,
        "successes_without": 90,
        "n_strata": 12,
        "method": "cmh",
        "stratification": "task (30 tasks)",
        "rate_with": 0.25,
        "rate_without": 0.45,
        "lift": 0.555556,
        "odds_ratio": odds_ratio,
        "ci_low": odds_ratio / 2,
        "ci_high": odds_ratio * 1.5,
        "p_value": q / 3,
        "q_value": q,
        "direction": "harmful",
        "examples": [{"trajectory_id": "run-7", "step_idx": 4}],
    }


def _skill(sid: str, instruction: str, status: str = "active", **kw: object) -> Skill:
    base = {
        "id": sid,
        "status": status,
        "section": "escalation",
        "namespace": "domain:travel",
        "instruction": instruction,
        "evidence": _evidence(0.2, 0.01),
        "source": {"method": "rule", "pattern_id": f"pattern:{sid}"},
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
    }
    return Skill(**(base | kw))  # type: ignore[arg-type]


def _write(directory: Path, skills: list[Skill], version: int) -> Path:
    """A checkout-like directory: skillbook/ and prompts_out/ rendered from ``skills``."""
    book = Skillbook({s.id: s for s in skills}, version=version)
    save_skillbook(book, directory / "skillbook")
    generator = PromptGenerator()
    generator.write(
        generator.run(book, {"domain:travel": BASE}), directory / "prompts_out", version
    )
    return directory


CONFIRM = "Before calling cancel_trip, list the action details and get an explicit yes."
BOOK = "Before calling book_trip, list the action details and get an explicit yes."
REPEAT = "Do not repeat an identical call to search_flights; ask the user instead."


@pytest.fixture
def versions(tmp_path: Path) -> tuple[Path, Path]:
    """v1: CONFIRM (active) and REPEAT (active). v2: CONFIRM with stronger evidence, BOOK added,
    REPEAT retired."""
    old = _write(
        tmp_path / "old",
        [_skill("sk-confirm", CONFIRM), _skill("sk-repeat", REPEAT, section="pitfalls")],
        version=1,
    )
    new = _write(
        tmp_path / "new",
        [
            _skill("sk-confirm", CONFIRM, evidence=_evidence(0.1, 0.0004, n_with=90)),
            _skill("sk-book", BOOK, evidence=_evidence(0.13, 0.00008)),
            _skill("sk-repeat", REPEAT, status="retired", section="pitfalls"),
        ],
        version=2,
    )
    return old, new


def test_skill_changes_are_classified(versions: tuple[Path, Path]) -> None:
    old, new = (snapshot_from_path(p) for p in versions)
    diff = diff_snapshots(old, new)
    assert [c.skill.id for c in diff.added] == ["sk-book"]
    assert [c.skill.id for c in diff.changed] == ["sk-confirm"]
    assert diff.changed[0].fields == ("evidence",)
    assert [c.skill.id for c in diff.retired] == ["sk-repeat"]
    assert diff.retired[0].old is not None and diff.retired[0].old.status == "active"


def test_prompt_lines_are_attributed_to_skills(versions: tuple[Path, Path]) -> None:
    diff = diff_snapshots(*(snapshot_from_path(p) for p in versions))
    assert diff.prompts_changed and not diff.rendered_from_skillbook
    (change,) = diff.prompts
    assert change.file == "domain-travel.md" and change.status == "modified"
    assert change.added == (f"- {BOOK}",)
    assert change.removed == ("", "### Pitfalls to avoid", f"- {REPEAT}")
    assert change.skills == {f"- {BOOK}": "sk-book", f"- {REPEAT}": "sk-repeat"}
    assert change.diff[0] == "--- a/prompts_out/domain-travel.md\n"


def test_unified_diff_applies_to_the_old_prompts(versions: tuple[Path, Path]) -> None:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    old, new = versions
    diff = diff_snapshots(snapshot_from_path(old), snapshot_from_path(new))
    patch = old / "change.patch"
    patch.write_text(diff.unified())
    subprocess.run(["git", "apply", "change.patch"], cwd=old, check=True, capture_output=True)
    for name in ("domain-travel.md",):
        assert (old / "prompts_out" / name).read_text() == (new / "prompts_out" / name).read_text()


def test_markdown_summary_carries_the_evidence(versions: tuple[Path, Path]) -> None:
    diff = diff_snapshots(*(snapshot_from_path(p) for p in versions))
    text = markdown_summary(
        diff, sources={"run-7": "traces/x.jsonl"}, link_base="https://example.org/blob/abc"
    )
    assert "Skillbook v1 → v2" in text
    assert "skills: 1 added, 1 changed, 1 retired" in text
    assert "### Skills added" in text and "### Skills changed" in text
    assert "### Skills retired" in text
    # why the added line is there, with its figures
    assert "added: Before calling book_trip" in text
    assert "`sk-book`: odds ratio 0.13 [0.07, 0.20], q=8.0e-05" in text
    # what changed in a changed skill
    assert "odds ratio 0.20 → 0.10; q 0.0100 → 0.0004; n with 40 → 90" in text
    assert "[`run-7` step 4](https://example.org/blob/abc/traces/x.jsonl)" in text
    assert "```diff\n--- a/prompts_out/domain-travel.md" in text


def test_markdown_is_cut_to_the_comment_limit(versions: tuple[Path, Path]) -> None:
    diff = diff_snapshots(*(snapshot_from_path(p) for p in versions))
    full = markdown_summary(diff)
    short = markdown_summary(diff, max_chars=len(full) - 50)
    assert len(short) <= len(full) - 50
    assert "truncated" in short and "### Skills added" in short


def test_reactivated_skill_is_added_and_example_changes_are_not_changes() -> None:
    old = Skillbook({"a": _skill("a", CONFIRM, status="rejected"), "b": _skill("b", BOOK)})
    moved = _evidence(0.2, 0.01) | {"examples": [{"trajectory_id": "other", "step_idx": 1}]}
    new = Skillbook({"a": _skill("a", CONFIRM), "b": _skill("b", BOOK, evidence=moved)})
    from pipeline.render import Snapshot

    diff = diff_snapshots(Snapshot("old", old, None), Snapshot("new", new, None))
    assert [c.skill.id for c in diff.added] == ["a"]
    assert diff.added[0].fields == ("status",)
    assert diff.changed == ()
    # no prompts on either side: both are rendered from the Skillbooks
    assert diff.rendered_from_skillbook
    assert diff.prompts[0].added == (f"- {CONFIRM}",)


def test_cli_formats_and_exit_code(versions: tuple[Path, Path]) -> None:
    old, new = (str(p) for p in versions)
    runner = CliRunner()
    result = runner.invoke(main, ["diff", old, new, "--format", "json", "-q"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["prompts_changed"] is True
    assert payload["old"]["skillbook_version"] == 1 and payload["new"]["skillbook_version"] == 2
    assert [c["id"] for c in payload["skills"]["retired"]] == ["sk-repeat"]

    result = runner.invoke(main, ["diff", old, new, "--format", "unified", "--exit-code", "-q"])
    assert result.exit_code == 1
    assert result.output.startswith("--- a/prompts_out/domain-travel.md")
    assert f"+- {BOOK}" in result.output

    same = runner.invoke(main, ["diff", new, new, "--exit-code", "-q"])
    assert same.exit_code == 0
    assert "No prompt line changed." in same.output


def test_cli_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["diff", str(tmp_path / "nope"), str(tmp_path)])
    assert result.exit_code == 2  # bad usage: a path argument that does not exist
    assert "nope' does not exist" in result.output
    result = runner.invoke(main, ["diff", str(tmp_path), str(tmp_path)])
    assert result.exit_code == 1
    assert "neither a Skillbook" in result.output
    assert runner.invoke(main, ["diff"]).exit_code == 2
    (tmp_path / "bad.json").write_text("{}")
    result = runner.invoke(main, ["diff", str(tmp_path / "bad.json"), str(tmp_path / "bad.json")])
    assert result.exit_code == 1 and "not a Skillbook" in result.output


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
    )


@pytest.fixture
def repo(tmp_path: Path, versions: tuple[Path, Path]) -> Path:
    """A git repository whose HEAD~1 holds nothing, HEAD holds v1, and work tree holds v2."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    old, new = versions
    root = tmp_path / "repo"
    root.mkdir()
    _git(root, "init", "-q")
    (root / "README").write_text("x\n")
    _git(root, "add", "README")
    _git(root, "commit", "-q", "-m", "start")
    for name in ("skillbook", "prompts_out"):
        shutil.copytree(old / name, root / name)
    _git(root, "add", "skillbook", "prompts_out")
    _git(root, "commit", "-q", "-m", "v1")
    for name in ("skillbook", "prompts_out"):
        shutil.rmtree(root / name)
        shutil.copytree(new / name, root / name)
    return root


def test_git_revision_against_the_work_tree(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(repo)
    side = snapshot_from_git("HEAD")
    assert side.label == "git:HEAD" and side.skillbook.version == 1
    assert sorted(side.prompts or {}) == ["domain-travel.md"]
    result = CliRunner().invoke(main, ["diff", "--git-rev", "HEAD", "--format", "json", "-q"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert [c["id"] for c in payload["skills"]["added"]] == ["sk-book"]
    assert payload["prompts"][0]["removed"][-1] == f"- {REPEAT}"


def test_git_revision_before_the_skillbook_existed(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(repo)
    result = CliRunner().invoke(
        main, ["diff", "--git-rev", "HEAD~1", "--git-rev", "HEAD", "--format", "json", "-q"]
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["old"]["skillbook_version"] is None
    assert sorted(c["id"] for c in payload["skills"]["added"]) == ["sk-confirm", "sk-repeat"]
    assert payload["prompts"][0]["status"] == "added"


def test_unknown_git_revision_is_a_clear_error(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(repo)
    result = CliRunner().invoke(main, ["diff", "--git-rev", "no-such-branch"])
    assert result.exit_code == 1
    assert "git revision 'no-such-branch' not found" in result.output


def test_flagged_skill_change_is_reported(versions: tuple[Path, Path]) -> None:
    old_dir, _ = versions
    old = snapshot_from_path(old_dir)
    book = Skillbook(dict(old.skillbook.skills), version=2)
    book.skills["sk-confirm"] = replace(book.skills["sk-confirm"], flags=("no longer significant",))
    from pipeline.render import Snapshot

    diff = diff_snapshots(old, Snapshot("new", book, old.prompts))
    assert [(c.skill.id, c.fields) for c in diff.changed] == [("sk-confirm", ("flags",))]
    assert not diff.prompts_changed
    assert "flags: no longer significant" in markdown_summary(diff)
