"""``coach diff`` (prompt and Skillbook changes, for pull requests) and ``coach report`` (the
offline HTML report)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from pipeline.cli.options import (
    MAX_LESSONS_OPTION,
    OUT_OPTION,
    SKILLBOOK_OPTION,
    common,
    domain_errors,
    emit,
    say,
)
from pipeline.fileio import atomic_write

if TYPE_CHECKING:
    from pipeline.render import PromptDiff, Snapshot

__all__ = ["diff_command", "report_command"]


def _working_tree(skillbook_dir: Path, out_dir: Path) -> Snapshot:
    """The current Skillbook and prompts directories as one side."""
    from pipeline.render import Snapshot, snapshot_from_path
    from pipeline.skillbook import Skillbook

    book_path = skillbook_dir / "skillbook.json"
    prompts = None
    manifest = None
    if out_dir.is_dir():
        side = snapshot_from_path(out_dir) if any(out_dir.iterdir()) else None
        if side is not None:
            prompts, manifest = side.prompts, side.manifest
    return Snapshot(
        f"{skillbook_dir} + {out_dir}",
        Skillbook.load(book_path),
        prompts,
        manifest,
        has_skillbook=book_path.is_file(),
    )


def _sides(
    old: str | None,
    new: str | None,
    git_revs: tuple[str, ...],
    skillbook_dir: Path,
    out_dir: Path,
) -> tuple[Snapshot, Snapshot]:
    from pipeline.render import snapshot_from_git, snapshot_from_path

    def git(rev: str) -> Snapshot:
        return snapshot_from_git(rev, skillbook_dir=skillbook_dir, prompts_dir=out_dir)

    if len(git_revs) > 2:
        raise click.UsageError("give --git-rev at most twice (old and new)")
    if len(git_revs) == 2:
        if old or new:
            raise click.UsageError("with two --git-rev, give no OLD/NEW paths")
        return git(git_revs[0]), git(git_revs[1])
    if len(git_revs) == 1:
        if new:
            raise click.UsageError("with --git-rev REV (the old side), give at most NEW")
        newer = snapshot_from_path(Path(old)) if old else _working_tree(skillbook_dir, out_dir)
        return git(git_revs[0]), newer
    if not (old and new):
        raise click.UsageError("give OLD and NEW, or --git-rev REV for the old side")
    return snapshot_from_path(Path(old)), snapshot_from_path(Path(new))


@click.command("diff")
@click.argument("old", required=False, type=click.Path(exists=True))
@click.argument("new", required=False, type=click.Path(exists=True))
@click.option(
    "--git-rev",
    "git_revs",
    multiple=True,
    metavar="REV",
    help="Read the old side at this git revision (twice: old and new). Without NEW, the new "
    "side is --skillbook and --out as they are now.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["markdown", "unified", "json"]),
    default="markdown",
    show_default=True,
    help="markdown: a pull-request comment; unified: the prompt diff only; json: everything.",
)
@click.option(
    "--exit-code", is_flag=True, help="Exit 1 when a prompt changed (like 'git diff --exit-code')."
)
@click.option(
    "--link-base",
    envvar="COACH_LINK_BASE",
    metavar="URL",
    help="Prefix for links to example trajectory files, e.g. "
    "https://github.com/OWNER/REPO/blob/SHA",
)
@SKILLBOOK_OPTION
@OUT_OPTION
@common
@domain_errors
def diff_command(
    old: str | None,
    new: str | None,
    git_revs: tuple[str, ...],
    fmt: str,
    exit_code: bool,
    link_base: str | None,
    skillbook_dir: Path,
    out_dir: Path,
    data_dir: Path,
    as_json: bool,
    quiet: bool,
) -> None:
    """Show what changed between two versions of the Skillbook and prompts.

    OLD and NEW are each a directory (a prompts directory, a Skillbook directory, or one holding
    skillbook/ and prompts_out/), or a skillbook.json file. --git-rev REV reads the old side as
    it was at a git revision. Prints a Markdown summary for a pull-request comment (skills
    added, changed and retired with their evidence and example trajectories, the prompt lines
    that changed) with the unified diff; example trajectories are looked up in DATA_DIR/tables.

    Example: coach diff --git-rev origin/main --format markdown --exit-code > comment.md
    """
    from pipeline.render import diff_snapshots, example_sources, markdown_summary

    old_side, new_side = _sides(old, new, git_revs, skillbook_dir, out_dir)
    result = diff_snapshots(old_side, new_side, prompts_dir=out_dir.as_posix())
    if as_json:
        fmt = "json"
    if fmt == "json":
        emit(True, result.to_dict(), "")
    elif fmt == "unified":
        text = result.unified()
        if text:
            from pipeline.redact import redact
            from pipeline.render.environment import visible_controls

            click.echo(visible_controls(redact(text)), nl=False)
    else:
        sources = example_sources(data_dir / "tables")
        click.echo(markdown_summary(result, sources=sources, link_base=link_base), nl=False)
    say(quiet)(
        f"diff: {len(result.added)} skills added, {len(result.changed)} changed, "
        f"{len(result.retired)} retired; {len(result.prompts)} prompt files changed"
    )
    if exit_code and result.prompts_changed:
        raise SystemExit(1)


@click.command("report")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    envvar="COACH_REPORT",
    help="HTML file to write (default: DATA_DIR/report.html).",
)
@click.option(
    "--since",
    type=click.Path(path_type=Path, exists=True),
    default=None,
    help="Show changes against this earlier Skillbook/prompts directory or skillbook.json.",
)
@click.option(
    "--since-rev",
    metavar="REV",
    default=None,
    help="Show changes against the Skillbook and prompts at this git revision.",
)
@click.option("--title", default="coach report", show_default=True, help="Page title.")
@SKILLBOOK_OPTION
@OUT_OPTION
@MAX_LESSONS_OPTION
@common
@domain_errors
def report_command(
    output: Path | None,
    since: Path | None,
    since_rev: str | None,
    title: str,
    skillbook_dir: Path,
    out_dir: Path,
    max_lessons: int | None,
    data_dir: Path,
    as_json: bool,
    quiet: bool,
) -> None:
    """Write a self-contained HTML report of the last run (no network needed to view it).

    Sections: run summary, success rate by domain and over runs, the largest failure clusters
    with example trajectories, every skill with its evidence and an odds-ratio chart (and how
    many active skills are over the prompt budget of --max-lessons), the strongest contrasts
    tested, and what changed (the latest Skillbook version, or against
    --since / --since-rev). Reads DATA_DIR (tables, analysis, last_run.json, written by
    'coach learn') and the Skillbook.

    Example: coach report -o report.html --since-rev HEAD
    """
    from pipeline.render import (
        REPORT_SECTIONS,
        PromptBudget,
        diff_snapshots,
        load_report_data,
        render_report,
        snapshot_from_git,
        snapshot_from_path,
    )

    if since is not None and since_rev is not None:
        raise click.UsageError("give --since or --since-rev, not both")
    data = load_report_data(data_dir, skillbook_dir)
    comparison: PromptDiff | None = None
    if since is not None or since_rev is not None:
        old = (
            snapshot_from_path(since)
            if since is not None
            else snapshot_from_git(str(since_rev), skillbook_dir=skillbook_dir, prompts_dir=out_dir)
        )
        comparison = diff_snapshots(
            old, _working_tree(skillbook_dir, out_dir), prompts_dir=out_dir.as_posix()
        )
    budget = PromptBudget(max_lessons=max_lessons)
    html = render_report(data, since=comparison, title=title, budget=budget)
    path = output or data_dir / "report.html"
    atomic_write(path, html)
    say(quiet)(f"report: {path} ({len(html.encode()) // 1024} KiB)")
    emit(
        as_json,
        {
            "path": str(path),
            "bytes": len(html.encode()),
            "sections": [s for s, _ in REPORT_SECTIONS],
            "skills": data.skillbook.by_status(),
            "trajectories": data.trajectories.height,
        },
        str(path),
    )
