"""PromptGenerator: render one system prompt per namespace from a Jinja template.

The template receives ``base_prompt`` (str), ``namespace`` (str) and ``sections`` (list of
``{"name", "title", "skills": [{"id", "instruction", "section", "evidence"}]}``). Skill text is
data: the template runs in the sandboxed environment of :mod:`pipeline.render.environment`,
and skill text and section titles are redacted and their Markdown- and template-active
characters escaped beforehand (:func:`~pipeline.render.environment.prompt_text`), so a skill
that looks like template code is printed, never evaluated. The package's template is
``pipeline/render/templates/system_prompt.md.j2``. Output: ``<out>/<namespace>.md`` (``:`` in the
namespace becomes ``-``) and
``<out>/manifest.json`` (per prompt: skill ids used and where its base prompt came from;
Skillbook version, template SHA-256). Which skills a prompt carries, in which order, is
:mod:`pipeline.render.lessons`: ranked by expected impact, within a budget of lessons and
characters.

A base prompt (:class:`BasePrompt`) is either the team's file (``--base-prompt``), printed as
written, or the most common system prompt of a namespace's runs (:func:`base_prompts`), which is
trace data: redacted, and its template syntax and markup neutralised (:func:`neutralise`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from jinja2 import TemplateError as JinjaTemplateError

from pipeline.errors import TemplateError
from pipeline.experiment import (
    CONTROL,
    normalise_prompt,
    prompt_version,
    seal_manifest,
    set_ranges,
)
from pipeline.fileio import atomic_write
from pipeline.redact import redact
from pipeline.render.environment import (
    Verbatim,
    break_template_syntax,
    environment,
    prompt_text,
)
from pipeline.render.lessons import (
    DEFAULT_MAX_CHARS,
    DEFAULT_MAX_LESSONS,
    PRECEDENCE,
    PromptBudget,
    compose,
    namespace_rank,
    rank,
    rendered_skills,
)
from pipeline.skillbook import NOT_RENDERED, SECTION_TITLES, Skill, Skillbook, section_key

__all__ = [
    "ACTIVE_HTML",
    "BasePrompt",
    "NOT_RENDERED",
    "PRECEDENCE",
    "PromptGenerator",
    "RenderedPrompt",
    "arm_filename",
    "base_prompts",
    "compose",
    "namespace_rank",
    "neutralise",
    "prompt_filename",
]

DEFAULT_TEMPLATE = "system_prompt.md.j2"
# HTML elements that run code, load something, take input or replace the document (WHATWG HTML
# and its obsolete elements browsers still parse); other tags (``<format_example>``, common in
# system prompts) are inert text to a browser and a Markdown viewer, unless they carry attributes.
# fmt: off
ACTIVE_HTML = frozenset((
    "a", "applet", "area", "audio", "base", "body", "button", "canvas", "details", "dialog",
    "embed", "form", "frame", "frameset", "head", "html", "iframe", "image", "img", "input",
    "link", "map", "marquee", "math", "meta", "noembed", "noframes", "noscript", "object",
    "option", "picture", "plaintext", "script", "select", "source", "style", "svg", "template",
    "textarea", "title", "track", "video", "xmp",
))
# fmt: on
# A tag (its name, and whether anything follows the name), a comment or a declaration.
_TAG = re.compile(r"<(?:/?([A-Za-z][^\s/>]*)([^<>]*)|[!?])")


class BasePrompt(str):
    """A namespace's base prompt: its text (this ``str``) and where it came from. ``source``:
    ``file`` (the team's file at ``path``, printed as written) or ``traces`` (the most common
    system prompt of the namespace's runs, shared by ``runs`` of them, made safe by
    :func:`neutralise`)."""

    source: str
    path: str | None
    runs: int | None

    def __new__(
        cls, text: str, source: str, *, path: str | None = None, runs: int | None = None
    ) -> BasePrompt:
        prompt = super().__new__(cls, text)
        prompt.source, prompt.path, prompt.runs = source, path, runs
        return prompt

    def provenance(self) -> dict[str, Any]:
        """Where it came from, for the manifest and the learn summary: ``{"source": "file",
        "path"}`` or ``{"source": "traces", "runs"}``."""
        if self.source == "file":
            return {"source": "file", "path": self.path}
        return {"source": self.source, "runs": self.runs}


def neutralise(text: str) -> str:
    """Trace text made safe to print as a base prompt, its lines kept: a backslash put between
    the two characters of every template delimiter (``{{`` -> ``{\\{``, ``{%`` -> ``{\\%``,
    ``{#``, ``}}``, ``%}``, ``#}``) and before the ``<`` of every comment, declaration, tag with
    attributes (``<img onerror=...>`` -> ``\\<img onerror=...>``) and tag of an
    :data:`ACTIVE_HTML` element (``<script>``, ``</script>``), so that no template engine,
    Markdown viewer or browser acts on it; then redacted (:func:`pipeline.redact.redact`).
    Inert tags without attributes (``<format_example>``) are kept: system prompts use them."""

    def tag(match: re.Match[str]) -> str:
        name, rest = match.groups()
        if name is None or rest.strip(" \t\r\n/") or name.lower() in ACTIVE_HTML:
            return "\\" + match.group(0)
        return match.group(0)

    return redact(_TAG.sub(tag, break_template_syntax(text)))


def prompt_filename(namespace: str) -> str:
    """File name of a namespace's prompt: ``domain:airline`` -> ``domain-airline.md``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", namespace) + ".md"


def arm_filename(namespace: str, arm: str) -> str:
    """File name of an experiment arm's prompt: the control arm is the namespace's prompt
    (:func:`prompt_filename`), another arm adds its name (``domain-airline.candidate.md``)."""
    base = prompt_filename(namespace)
    return base if arm == CONTROL else f"{base[:-3]}.{prompt_filename(arm)}"


@dataclass(frozen=True)
class RenderedPrompt:
    """A rendered prompt: its namespace, text, the ids of the skills it carries, and where its
    base prompt came from (:meth:`BasePrompt.provenance`; ``{"source": "none"}`` without
    one). ``arm``: ``control`` (the namespace's prompt) or an experiment's other arm, whose
    ``assignment_id`` is the experiment id and ``share`` its share of units. ``lines``: the
    skill lines as they appear in the text (for matching a run's system prompt to it).
    ``base_text``: the base prompt as printed in it (for telling it apart from a run's own
    system prompt when runs that used it come back, see :func:`base_prompts`)."""

    namespace: str
    text: str
    skill_ids: tuple[str, ...]
    base_prompt: dict[str, Any] = field(default_factory=lambda: {"source": "none"})
    arm: str = CONTROL
    assignment_id: str | None = None
    share: float = 1.0
    lines: tuple[str, ...] = ()
    base_text: str = ""

    @property
    def filename(self) -> str:
        """Its file name in the prompts directory (:func:`arm_filename`)."""
        return arm_filename(self.namespace, self.arm)

    @property
    def version(self) -> str:
        """Its :func:`pipeline.experiment.prompt_version`."""
        return prompt_version(self.text)


class PromptGenerator:
    """``PromptGenerator(template_dir, ...).run(skillbook, base_prompts) -> list[RenderedPrompt]``.

    Lessons are ranked by expected impact (:func:`pipeline.render.lessons.rank`): a prompt
    keeps them in that order (within each section) while they fit its budget
    (:class:`~pipeline.render.lessons.PromptBudget`); what does not fit is listed by
    :func:`pipeline.render.lessons.over_budget`.

    Args:
        template_dir: a directory holding ``system_prompt.md.j2`` to use instead of the
            package's template.
        max_chars: size budget for the skills part of each prompt, in characters.
        max_lessons: line budget, the most lessons one prompt carries (None or 0: no limit).
    """

    def __init__(
        self,
        template_dir: Path | None = None,
        *,
        max_chars: int = DEFAULT_MAX_CHARS,
        max_lessons: int | None = DEFAULT_MAX_LESSONS,
    ) -> None:
        if template_dir is not None and not (template_dir / DEFAULT_TEMPLATE).is_file():
            raise TemplateError(f"{template_dir / DEFAULT_TEMPLATE}: template not found")
        env = environment(template_dir)
        try:
            self.template = env.get_template(DEFAULT_TEMPLATE)
        except JinjaTemplateError as exc:
            raise TemplateError(f"prompt template does not parse: {exc}") from exc
        source, _, _ = env.loader.get_source(env, DEFAULT_TEMPLATE)  # type: ignore[union-attr]
        self.template_source = source
        self.template_hash = hashlib.sha256(source.encode()).hexdigest()
        self.budget = PromptBudget(max_lessons=max_lessons, max_chars=max_chars)

    def run(self, skillbook: Skillbook, base_prompts: dict[str, str]) -> list[RenderedPrompt]:
        """Render one prompt per namespace that has active skills or a base prompt.

        Each prompt composes its namespace with ``global`` (:func:`compose`): a ``user:<id>``
        prompt holds that user's skills and the global ones, never another user's. Returns
        prompts sorted by namespace.

        Raises:
            TemplateError: the template fails to render.
        """
        active = rendered_skills(skillbook)
        # an experiment whose skills a person has since decided is rendered as ended (the next
        # learn ends it): its arms would no longer differ by those skills
        running = {
            e["namespace"]: e
            for e in skillbook.experiments
            if e["status"] == "running"
            and all(
                i in skillbook.skills and skillbook.skills[i].status == "proposed"
                for i in e["skill_ids"]
            )
        }
        namespaces = sorted({s.namespace for s in active} | set(base_prompts) | set(running))
        prompts = []
        for namespace in namespaces:
            base = base_prompts.get(namespace, "")
            own = compose(active, [namespace])
            experiment = running.get(namespace)
            if experiment is None:
                prompts.append(self._render(namespace, base, own))
                continue
            # every arm is the control's skills exactly, plus the ones it tests or minus the
            # ones it holds back: the arms differ by nothing else, even near the size budget
            control = set(self._render(namespace, base, own).skill_ids)
            for arm in experiment["arms"]:
                tested = [skillbook.skills[i] for i in arm["skill_ids"] if i in skillbook.skills]
                kept = [s for s in own if s.id in control and s.id not in arm.get("removed", ())]
                rendered = self._render(namespace, base, kept, tested, exact=True)
                prompts.append(
                    replace(
                        rendered,
                        arm=arm["arm"],
                        assignment_id=experiment["id"],
                        share=float(arm["share"]),
                    )
                )
        return prompts

    def run_for(
        self,
        skillbook: Skillbook,
        base_prompt: str,
        *,
        domain: str | None = None,
        agent: str | None = None,
        user: str | None = None,
    ) -> RenderedPrompt:
        """One prompt for a concrete context (a user talking to an agent in a domain): the
        active skills of ``user:<user>``, ``domain:<domain>``, ``agent:<agent>`` and ``global``
        composed by :func:`compose`. The prompt's namespace is the most specific one given.

        Raises:
            TemplateError: the template fails to render.
        """
        chain = [
            f"{kind}:{name}"
            for kind, name in (("user", user), ("domain", domain), ("agent", agent))
            if name
        ]
        active = rendered_skills(skillbook)
        return self._render((chain or ["global"])[0], base_prompt, compose(active, chain))

    def _render(
        self,
        namespace: str,
        base_prompt: str,
        own: list[Skill],
        tested: Sequence[Skill] = (),
        *,
        exact: bool = False,
    ) -> RenderedPrompt:
        """Render one prompt of ``namespace`` from ``base_prompt`` and the skills ``own`` (those
        that fit the budget, by expected impact; with ``exact``, all of them), plus the skills
        under ``tested`` (always kept: an experiment's arm must hold them), in the order of
        :func:`~pipeline.render.lessons.rank`."""
        chosen = rank([*tested, *own]) if exact else list(self.budget.select(own).kept)
        source = getattr(base_prompt, "source", None)
        base = base_prompt.rstrip()
        provenance = {"source": "none"}
        if isinstance(base_prompt, BasePrompt) and base:
            provenance = base_prompt.provenance()
        elif base:
            provenance = {"source": "caller"}
        sections = []
        for name in sorted(
            {s.section for s in chosen},
            key=section_key,
        ):
            sections.append(
                {
                    "name": name,
                    "title": prompt_text(
                        SECTION_TITLES.get(name, name.replace("-", " ").capitalize())
                    ),
                    "skills": [
                        {
                            "id": s.id,
                            "instruction": prompt_text(s.instruction),
                            "section": s.section,
                            "evidence": dict(s.evidence),
                        }
                        for s in chosen
                        if s.section == name
                    ],
                }
            )
        context: dict[str, Any] = {
            "base_prompt": Verbatim(base) if source == "file" else base,
            "namespace": namespace,
            "sections": sections,
        }
        try:
            text = self.template.render(**context)
        except JinjaTemplateError as exc:
            raise TemplateError(f"rendering the prompt for {namespace}: {exc}") from exc
        lines = tuple(normalise_prompt(prompt_text(s.instruction)) for s in chosen)
        return RenderedPrompt(
            namespace,
            text.strip() + "\n",
            tuple(s.id for s in chosen),
            provenance,
            lines=lines,
            base_text=base,
        )

    def write(
        self,
        prompts: list[RenderedPrompt],
        out_dir: Path,
        skillbook_version: int,
        experiments: Sequence[Mapping[str, Any]] = (),
    ) -> Path:
        """Write each prompt and ``manifest.json`` (format 2, described in
        :mod:`pipeline.experiment.manifest`) atomically (unchanged files are not rewritten);
        prompt files of arms that no longer run are removed. ``experiments``: the Skillbook's
        (for each running one's start and skills under test). Returns the manifest path."""
        running = {e["id"]: e for e in experiments if e["status"] == "running"}
        namespaces: dict[str, dict[str, Any]] = {}
        for p in prompts:
            entry = namespaces.setdefault(
                p.namespace, {"assignment_id": p.assignment_id, "experiment": None, "arms": []}
            )
            experiment = running.get(p.assignment_id or "")
            if experiment is not None:
                entry["experiment"] = {
                    "id": experiment["id"],
                    "started_at": experiment["started_at"],
                    "skills_under_test": list(experiment["skill_ids"]),
                    "share": experiment["share"],
                }
            entry["arms"].append(
                {
                    "arm": p.arm,
                    "file": p.filename,
                    "prompt_version": p.version,
                    "skill_ids": list(p.skill_ids),
                    "share": p.share,
                }
            )
        for entry in namespaces.values():
            set_ranges(entry["arms"])
        manifest = seal_manifest(
            {
                "skillbook_version": skillbook_version,
                "template_sha256": self.template_hash,
                "prompts": {
                    p.filename: {
                        "namespace": p.namespace,
                        "skill_ids": list(p.skill_ids),
                        "base_prompt": p.base_prompt,
                        "prompt_version": p.version,
                    }
                    for p in prompts
                    if p.arm == CONTROL
                },
                "namespaces": dict(sorted(namespaces.items())),
            }
        )
        files = {out_dir / p.filename: p.text for p in prompts}
        for path, text in files.items():
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                atomic_write(path, text)
        path = out_dir / "manifest.json"
        text = json.dumps(manifest, indent=2) + "\n"
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            atomic_write(path, text)
        # arms that no longer run go last, so a runtime reading the old manifest finds its files
        for stale in out_dir.glob("*.md"):
            if _ARM_FILE.search(stale.name) and stale not in files:
                stale.unlink()
        return path


# The prompt files of experiment arms other than control (see arm_filename): candidate arms
# (skills under test added) and holdback arms (active skills left out).
_ARM_FILE = re.compile(r"\.(candidate|holdback)(-[0-9]+)?\.md$")


def base_prompts(trajectories: Any, rendered: Mapping[str, str] | None = None) -> dict[str, str]:
    """The most common system prompt per namespace (ties: the lexically smallest), from a
    polars DataFrame with ``domain`` and ``system_prompt`` columns (String). Rows without a
    system prompt are skipped; rows without a domain count for ``global``.

    A run whose system prompt is a prompt coach rendered (``rendered``: prompt version ->
    the base prompt printed in it, :meth:`pipeline.experiment.VersionHistory.bases`) counts
    for that base prompt, not for its whole text: otherwise the skills of one night's prompt
    would become part of the next night's base prompt once runs that used it come back.

    Returns:
        ``{namespace: BasePrompt}`` with source ``traces``: the namespace redacted as the
        Skillbook's are, the text made safe by :func:`neutralise` (a rendered prompt's base is
        already safe).
    """
    import polars as pl

    counts = (
        trajectories.lazy()
        .select("domain", "system_prompt")
        .filter(pl.col("system_prompt").is_not_null() & (pl.col("system_prompt") != ""))
        .with_columns(
            pl.when(pl.col("domain").is_not_null() & (pl.col("domain") != ""))
            .then(pl.lit("domain:") + pl.col("domain"))
            .otherwise(pl.lit("global"))
            .alias("namespace")
        )
        .group_by("namespace", "system_prompt")
        .len()
        .collect()
    )
    tally: dict[str, dict[tuple[str, bool], int]] = {}
    for namespace, text, runs in counts.select("namespace", "system_prompt", "len").iter_rows():
        base = (rendered or {}).get(prompt_version(text)) if rendered else None
        key = (base, True) if base is not None else (text, False)
        by_text = tally.setdefault(namespace, {})
        by_text[key] = by_text.get(key, 0) + runs
    bases: dict[str, str] = {}
    for namespace in sorted(tally):
        (text, safe), runs = min(tally[namespace].items(), key=lambda kv: (-kv[1], kv[0][0]))
        prompt = BasePrompt(text if safe else neutralise(text), "traces", runs=runs)
        bases.setdefault(redact(namespace), prompt)
    return bases
