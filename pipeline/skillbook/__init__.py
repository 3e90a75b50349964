"""The Skillbook, the learned artifact: a versioned, reviewable, evidence-backed set of skills,
kept as ``skillbook.json`` for machines and ``SKILLBOOK.md`` for people, with every earlier
version in ``versions/`` and every run in ``runs.jsonl``.

    book = Skillbook.load(directory / "skillbook.json")
    book.merge(candidates, policy=MergePolicy(), now=timestamp(), run=run)  # a learning run
    book.decide("sk-3f2a", "approve", actor="ada", now=timestamp())      # a person
    save_skillbook(book, directory)  # pipeline.render: SKILLBOOK.md rendered, both files saved

This is the package's one face; its parts, each depending only on those before it:

- :mod:`~pipeline.skillbook.types`: statuses, sections, modes, :class:`Skill`,
  :class:`Candidate` and :func:`skill_id`, :class:`MergePolicy`, :class:`MergeResult`;
- :mod:`~pipeline.skillbook.drift`: evidence over time (recency weighting, drift, material
  change, near-duplicates);
- :mod:`~pipeline.skillbook.history`: snapshots, checkout and comparison, ``runs.jsonl``;
- :mod:`~pipeline.skillbook.fileformat`: the JSON document, :data:`FORMAT_VERSION`,
  :data:`MIGRATIONS`, atomic saves;
- :mod:`~pipeline.skillbook.merge` (a run) and :mod:`~pipeline.skillbook.decisions` (a person);
- :mod:`~pipeline.skillbook.book`: :class:`Skillbook`, which records every change.

The Skillbook depends on nothing that analyses or renders: importing it loads none of DuckDB,
polars, pyarrow or numpy, and :mod:`pipeline.render` (which imports it) makes ``SKILLBOOK.md``.
"""

from __future__ import annotations

from pipeline.skillbook.book import Skillbook, checkout, diff, load_ref
from pipeline.skillbook.drift import (
    WeightedEffect,
    material_change,
    near_duplicate,
    observation,
    weighted_effect,
)
from pipeline.skillbook.fileformat import FORMAT_VERSION, MIGRATIONS
from pipeline.skillbook.history import append_run, read_runs, snapshot_path, snapshot_versions
from pipeline.skillbook.types import (
    CHANGE_KEYS,
    DEFAULT_HALF_LIFE_DAYS,
    LLM_SECTIONS,
    MODES,
    NOT_RENDERED,
    SECTION_DEFINITIONS,
    SECTION_TITLES,
    SECTIONS,
    STATUSES,
    Candidate,
    MergePolicy,
    MergeResult,
    Section,
    Skill,
    section_key,
    section_title,
    skill_id,
)

__all__ = [
    "CHANGE_KEYS",
    "DEFAULT_HALF_LIFE_DAYS",
    "FORMAT_VERSION",
    "LLM_SECTIONS",
    "MIGRATIONS",
    "MODES",
    "NOT_RENDERED",
    "SECTIONS",
    "SECTION_DEFINITIONS",
    "SECTION_TITLES",
    "STATUSES",
    "Candidate",
    "MergePolicy",
    "MergeResult",
    "Section",
    "Skill",
    "Skillbook",
    "WeightedEffect",
    "append_run",
    "checkout",
    "diff",
    "load_ref",
    "material_change",
    "near_duplicate",
    "observation",
    "read_runs",
    "section_key",
    "section_title",
    "skill_id",
    "snapshot_path",
    "snapshot_versions",
    "weighted_effect",
]
