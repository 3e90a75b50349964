"""Whether a ``learn`` run has anything to do: the fingerprint of everything a run depends on
(:func:`run_fingerprint`), compared with the one stored in the last run's ``last_run.json``
(:func:`last_run`). Decided from file sizes, modification times and hashes alone: this module
loads none of the analysis stack.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from typing import Any

from pipeline import ingest
from pipeline.config import Config
from pipeline.version import __version__

__all__ = ["LAST_RUN_FORMAT", "last_run", "run_fingerprint", "run_record"]

# The form of last_run.json: a run whose stored summary has another form is run again.
LAST_RUN_FORMAT = 3


def last_run(config: Config) -> dict[str, Any]:
    """The summary the last ``learn`` stored in ``config.data_dir / "last_run.json"``; ``{}``
    when there is none or it is unreadable."""
    try:
        data = json.loads((config.data_dir / "last_run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def run_fingerprint(config: Config) -> str | None:
    """SHA-256 (hex) of everything a ``learn`` run depends on, or ``None`` when an input file is
    new or changed since the stored tables were written (or there are no stored tables).

    Covers: coach's version and :data:`LAST_RUN_FORMAT`; every :class:`Config` field but
    ``rebuild`` and ``strict`` (how a run reads, not what it learns: a rebuilt store is the
    store of the same inputs); each input file's path, size and modification time, all of which
    must match the store's ``ingest.json`` (the make/rsync rule); the bytes of the store's
    manifest (``snapshot.json``: which snapshot is committed), ``skillbook.json``, the prompts'
    ``manifest.json``, the template directory's files and the base prompt file. Equal
    fingerprints mean a new run would read nothing new and produce the same Skillbook and
    prompts. :func:`pipeline.learn.learn` does not compare them under ``rebuild``.

    Raises:
        InputError: a path is missing or a glob matches nothing (as :func:`pipeline.ingest.ingest` would).
    """
    try:
        stored = json.loads(
            (config.data_dir / "tables" / "ingest.json").read_text(encoding="utf-8")
        )
    except (OSError, ValueError):
        return None
    known = {f.get("path"): f for f in stored.get("files", []) if isinstance(f, dict)}
    files = []
    for path in ingest.discover(list(config.paths), exclude=[config.data_dir]):
        stat = path.stat()
        report = known.get(str(path))
        if report is None or (report.get("size"), report.get("mtime_ns")) != (
            stat.st_size,
            stat.st_mtime_ns,
        ):
            return None
        files.append((str(path), stat.st_size, stat.st_mtime_ns))
    digest = hashlib.sha256()
    digest.update(f"coach {__version__}, last_run.json {LAST_RUN_FORMAT}\0".encode())
    settings = {k: v for k, v in asdict(config).items() if k not in ("rebuild", "strict")}
    digest.update(json.dumps([settings, files], sort_keys=True, default=str).encode())
    extra = [
        config.data_dir / "tables" / "snapshot.json",
        config.skillbook_dir / "skillbook.json",
        config.out_dir / "manifest.json",
    ]
    if config.template_dir is not None and config.template_dir.is_dir():
        extra.extend(sorted(p for p in config.template_dir.rglob("*") if p.is_file()))
    if config.base_prompt_file is not None:
        extra.append(config.base_prompt_file)
    for path in extra:
        digest.update(str(path).encode() + b"\0")
        try:
            digest.update(hashlib.sha256(path.read_bytes()).digest())
        except OSError:
            digest.update(b"missing")
    return digest.hexdigest()


def run_record(run: Any) -> dict[str, Any]:
    """What the Skillbook's history keeps of a ``learn`` run (``run``: the
    :class:`pipeline.learn.Run` after extraction): its id (a hash of the inputs and the
    settings that decide), inputs, settings and counts."""
    config, traces, units = run.config, run.traces, run.analysis.units
    settings: dict[str, Any] = {
        "mode": config.mode,
        "min_support": config.analyzer.min_support,
        "fdr": config.analyzer.fdr,
    }
    if config.llm.enabled:
        settings["llm"] = {"model": config.llm.model, "endpoint": config.llm.endpoint}
    if config.section_modes:
        settings["section_modes"] = dict(config.section_modes)
    inputs_sha256 = traces.content_hash()
    run_id = hashlib.sha256(
        (inputs_sha256 + json.dumps(settings, sort_keys=True)).encode()
    ).hexdigest()[:16]
    counts = traces.counts
    return {
        "run_id": run_id,
        "inputs": sorted({f.path for f in traces.files if f.status != "skipped"}),
        "inputs_sha256": inputs_sha256,
        "settings": settings,
        "counts": {
            "trajectories": counts["trajectories"],
            "quarantined": counts["quarantined"],
            "features_tested": run.analysis.results.height,
            "candidates": len(run.candidates),
            "labelled": units.height,
            "successes": int(units["success"].sum()) if units.height else 0,
            "llm_judged": len(run.judged),
        },
    }
