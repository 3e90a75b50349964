"""PromptGenerator: render one system prompt per namespace from a Jinja template.

The template receives ``base_prompt`` (str), ``namespace`` (str) and ``sections`` (list of
``{"name", "title", "skills": [{"id", "instruction", "section", "evidence"}]}``). Skill text is
data: templates run in Jinja's ``SandboxedEnvironment`` with autoescaping of Markdown-active
characters applied to skill text beforehand, so a skill that looks like template code is printed,
never evaluated. Output: ``<out>/<namespace>.md`` (``:`` in the namespace becomes ``-``) and
``<out>/manifest.json`` (per prompt: skill ids used, Skillbook version, template SHA-256).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from jinja2 import StrictUndefined
from jinja2 import TemplateError as JinjaTemplateError
from jinja2.sandbox import SandboxedEnvironment

from pipeline.errors import TemplateError
from pipeline.fileio import atomic_write
from pipeline.skillbook import Skill, Skillbook, section_key

__all__ = ["PromptGenerator", "RenderedPrompt", "prompt_filename"]

SECTION_TITLES = {
    "procedures": "Procedures that work",
    "escalation": "Confirmations and escalation",
    "tool-usage": "Tool usage",
    "pitfalls": "Pitfalls to avoid",
}
DEFAULT_TEMPLATE = "system_prompt.md.j2"
_MARKDOWN_SPECIAL = re.compile(r"([\\`*{}\[\]<>#|])")


def prompt_filename(namespace: str) -> str:
    """File name of a namespace's prompt: ``domain:airline`` -> ``domain-airline.md``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", namespace) + ".md"


def _escape(text: str) -> str:
    """Skill text made inert: one line, Markdown-special characters backslash-escaped."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(text.split()))


@dataclass(frozen=True)
class RenderedPrompt:
    """A rendered prompt: its namespace, text, and the ids of the skills it carries."""

    namespace: str
    text: str
    skill_ids: tuple[str, ...]


class PromptGenerator:
    """``PromptGenerator(template_dir, ...).run(skillbook, base_prompts) -> list[RenderedPrompt]``.

    Args:
        template_dir: a directory holding ``system_prompt.md.j2`` to use instead of the
            package's template.
        max_chars: size budget for the skills part of each prompt, in characters; the most
            valuable skills (:attr:`pipeline.skillbook.Skill.value`) are kept first.
    """

    def __init__(self, template_dir: Path | None = None, *, max_chars: int = 4000) -> None:
        if template_dir is not None:
            path = template_dir / DEFAULT_TEMPLATE
            if not path.is_file():
                raise TemplateError(f"{path}: template not found")
            source = path.read_text(encoding="utf-8")
        else:
            source = (resources.files("pipeline") / "templates" / DEFAULT_TEMPLATE).read_text(
                encoding="utf-8"
            )
        self.template_source = source
        self.template_hash = hashlib.sha256(source.encode()).hexdigest()
        self.max_chars = max_chars
        env = SandboxedEnvironment(
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            autoescape=False,
        )
        try:
            self.template = env.from_string(source)
        except JinjaTemplateError as exc:
            raise TemplateError(f"prompt template does not parse: {exc}") from exc

    def _select(self, skills: list[Skill]) -> list[Skill]:
        chosen, used = [], 0
        for skill in sorted(skills, key=lambda s: (-s.value, s.id)):
            cost = len(skill.instruction) + 3
            if used + cost > self.max_chars:
                continue
            chosen.append(skill)
            used += cost
        return chosen

    def run(self, skillbook: Skillbook, base_prompts: dict[str, str]) -> list[RenderedPrompt]:
        """Render one prompt per namespace that has active skills or a base prompt.

        ``global`` skills go into every namespace's prompt. Returns prompts sorted by namespace.

        Raises:
            TemplateError: the template fails to render.
        """
        active = [s for s in skillbook.skills.values() if s.status == "active"]
        namespaces = sorted({s.namespace for s in active} | set(base_prompts))
        out = []
        for namespace in namespaces:
            own = [s for s in active if s.namespace in (namespace, "global")]
            chosen = self._select(own)
            sections = []
            for name in sorted(
                {s.section for s in chosen},
                key=section_key,
            ):
                sections.append(
                    {
                        "name": name,
                        "title": SECTION_TITLES.get(name, name.replace("-", " ").capitalize()),
                        "skills": [
                            {
                                "id": s.id,
                                "instruction": _escape(s.instruction),
                                "section": s.section,
                                "evidence": dict(s.evidence),
                            }
                            for s in chosen
                            if s.section == name
                        ],
                    }
                )
            context: dict[str, Any] = {
                "base_prompt": base_prompts.get(namespace, "").rstrip(),
                "namespace": namespace,
                "sections": sections,
            }
            try:
                text = self.template.render(**context)
            except JinjaTemplateError as exc:
                raise TemplateError(f"rendering the prompt for {namespace}: {exc}") from exc
            out.append(RenderedPrompt(namespace, text.strip() + "\n", tuple(s.id for s in chosen)))
        return out

    def write(self, prompts: list[RenderedPrompt], out_dir: Path, skillbook_version: int) -> Path:
        """Write each prompt and ``manifest.json`` atomically (unchanged files are not
        rewritten). Returns the manifest path."""
        manifest = {
            "skillbook_version": skillbook_version,
            "template_sha256": self.template_hash,
            "prompts": {
                prompt_filename(p.namespace): {
                    "namespace": p.namespace,
                    "skill_ids": list(p.skill_ids),
                }
                for p in prompts
            },
        }
        files = {out_dir / prompt_filename(p.namespace): p.text for p in prompts}
        files[out_dir / "manifest.json"] = json.dumps(manifest, indent=2) + "\n"
        for path, text in files.items():
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                atomic_write(path, text)
        return out_dir / "manifest.json"


def base_prompts(trajectories: Any) -> dict[str, str]:
    """The most common system prompt per namespace (ties: the lexically smallest), from a
    polars DataFrame with ``domain`` and ``system_prompt`` columns."""
    counts: dict[str, Counter[str]] = {}
    for domain, prompt in zip(
        trajectories["domain"].to_list(), trajectories["system_prompt"].to_list(), strict=True
    ):
        if prompt:
            namespace = f"domain:{domain}" if domain else "global"
            counts.setdefault(namespace, Counter())[prompt] += 1
    return {ns: min(c.items(), key=lambda kv: (-kv[1], kv[0]))[0] for ns, c in counts.items()}
