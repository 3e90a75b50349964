"""Planted-rule benchmark: precision and recall of the rules coach recovers (``make eval``).

For each size and effect, synthetic Chat JSONL with the five planted rules of
:func:`synth.airline_domain` (plus noise and a task-difficulty confound) is generated,
ingested and analysed exactly as ``coach learn`` would; the skills that would be active
(significant candidates) are scored against the planted rules with
:func:`synth.score_recovery`. The same is done on data with random labels, where
every active skill is a false discovery. Writes ``<out>.md`` and ``<out>.json``.

Usage: python bench/eval_planted.py [--sizes 200,2000,20000] [--effects 0.1,0.2,0.3]
       [--seeds 3] [--out bench/eval_results]
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
# the planted-set generator and the loopback LLM server live with the tests
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from machine import machine, machine_line, write_results  # noqa: E402
from synth import (  # noqa: E402
    PlantedConfig,
    airline_domain,
    generate_planted,
    score_recovery,
    write_jsonl,
)

from pipeline.analyze import Analyzer, AnalyzerConfig  # noqa: E402
from pipeline.extract import SkillExtractor  # noqa: E402
from pipeline.ingest import ingest  # noqa: E402

TARGET_PRECISION, TARGET_RECALL, TARGET_SIZE, TARGET_EFFECT = 0.95, 0.90, 2000, 0.2
# Consolidation: one planted behaviour should not surface as several active skills.
TARGET_PER_RULE = 1.2


def run_cell(
    size: int, effect: float, seed: int, random_labels: bool, work: Path
) -> dict[str, Any]:
    """One generate -> ingest -> analyze -> extract -> score run."""
    domain = airline_domain(effect=effect)
    config = PlantedConfig(
        domains=(domain,), n_trajectories=size, random_labels=random_labels, seed=seed
    )
    path = write_jsonl(
        work / f"planted-{size}-{effect}-{seed}-{random_labels}.jsonl", generate_planted(config)
    )
    start = time.perf_counter()
    traces = ingest([path])
    analysis = Analyzer(AnalyzerConfig()).run(traces)
    candidates = SkillExtractor().run(analysis)
    seconds = time.perf_counter() - start
    path.unlink()
    recovery = score_recovery(candidates, [] if random_labels else [domain])
    return {
        "size": size,
        "effect": effect,
        "seed": seed,
        "random_labels": random_labels,
        "trials_per_task": config.trials,
        "active": len(recovery.active),
        "rules": len(recovery.rules),
        "precision": recovery.precision,
        "recall": recovery.recall,
        "false_positives": [f for _, f in recovery.false_positives],
        "missed": [r["kind"] for r in recovery.rules if not r["recovered"]],
        "features_tested": analysis.results.height,
        "seconds": round(seconds, 2),
    }


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(statistics.fmean(known), 3) if known else None


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (size, effect) over seeds: mean precision (over seeds with an active skill),
    mean recall, active skills and false positives in all, missed rules by kind."""
    cells: dict[tuple[int, float, bool], list[dict[str, Any]]] = {}
    for run in runs:
        cells.setdefault((run["size"], run["effect"], run["random_labels"]), []).append(run)
    rows = []
    for (size, effect, random_labels), group in sorted(cells.items()):
        missed: dict[str, int] = {}
        for run in group:
            for kind in run["missed"]:
                missed[kind] = missed.get(kind, 0) + 1
        rows.append(
            {
                "size": size,
                "effect": effect,
                "random_labels": random_labels,
                "seeds": len(group),
                "precision": _mean([r["precision"] for r in group]),
                "recall": _mean([r["recall"] for r in group]),
                "active": sum(r["active"] for r in group),
                "per_rule": round(
                    sum(r["active"] for r in group) / max(1, sum(r.get("rules", 0) for r in group)),
                    2,
                ),
                "false_positives": sum(len(r["false_positives"]) for r in group),
                "missed": missed,
            }
        )
    return rows


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def report(
    rows: list[dict[str, Any]], runs: list[dict[str, Any]], info: dict[str, Any], command: str
) -> str:
    planted = [r for r in rows if not r["random_labels"]]
    null = [r for r in rows if r["random_labels"]]
    lines = [
        "# Planted-rule benchmark",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {machine_line(info)}",
        "",
        "Five planted rules (missing confirmation, wrong argument shape, wrong tool order, no",
        "retry after an error, needless transfer; `tests/synth.py: airline_domain`), each",
        "broken by about 30% of its eligible runs, each lowering the success probability by the",
        "effect shown; noise tools, a repeated lookup and a `notify` argument without effect;",
        "harder tasks break rules and call noise tools more often. "
        f"{runs[0]['trials_per_task']} runs per task.",
        "A rule is recovered when a skill that would be active maps onto it",
        "(`tests/synth.py: rule_features`). Precision is averaged over the seeds with at least",
        "one active skill; recall over all seeds. Skills shown by nearly the same runs are",
        "consolidated into one (`pipeline/consolidate.py`); active skills per planted rule",
        "counts how many lines one planted behaviour gives the prompt.",
        "",
        "| trajectories | effect (points) | seeds | precision | recall | active skills | "
        "active per planted rule | false positives | rules missed (times) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in planted:
        missed = ", ".join(f"{k} ({v})" for k, v in sorted(r["missed"].items())) or "none"
        lines.append(
            f"| {r['size']:,} | {r['effect'] * 100:.0f} | {r['seeds']} | {_fmt(r['precision'])} | "
            f"{_fmt(r['recall'])} | {r['active']} | {_fmt(r['per_rule'])} | "
            f"{r['false_positives']} | {missed} |"
        )
    lines += [
        "",
        "Random labels (success drawn with probability 0.5, whatever the run did): active "
        "skills must be 0.",
        "",
        "| trajectories | seeds | active skills |",
        "|---:|---:|---:|",
    ]
    for r in null:
        lines.append(f"| {r['size']:,} | {r['seeds']} | {r['active']} |")
    target = [
        r for r in planted if r["size"] == TARGET_SIZE and r["effect"] >= TARGET_EFFECT - 1e-9
    ]
    lines += ["", "## Targets", ""]
    for r in target:
        ok_p = r["precision"] is not None and r["precision"] >= TARGET_PRECISION
        ok_r = r["recall"] is not None and r["recall"] >= TARGET_RECALL
        lines.append(
            f"- {r['size']:,} trajectories, {r['effect'] * 100:.0f} points: precision "
            f"{_fmt(r['precision'])} ({'met' if ok_p else 'MISSED'}: >= {TARGET_PRECISION}), "
            f"recall {_fmt(r['recall'])} ({'met' if ok_r else 'MISSED'}: >= {TARGET_RECALL}), "
            f"active skills per planted rule {_fmt(r['per_rule'])} "
            f"({'met' if r['per_rule'] <= TARGET_PER_RULE else 'MISSED'}: <= {TARGET_PER_RULE})"
        )
    total_null = sum(r["active"] for r in null)
    lines.append(
        f"- random labels: {total_null} active skills ({'met' if total_null == 0 else 'MISSED'}:"
        " must be 0)"
    )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="200,2000,20000")
    parser.add_argument("--effects", default="0.1,0.2,0.3")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", default="bench/eval_results")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    effects = [float(e) for e in args.effects.split(",")]
    runs = []
    with tempfile.TemporaryDirectory(prefix="coach-eval-") as tmp:
        work = Path(tmp)
        for size in sizes:
            for seed in range(args.seeds):
                for effect in effects:
                    runs.append(run_cell(size, effect, seed, False, work))
                    _progress(runs[-1])
                runs.append(run_cell(size, 0.0, seed, True, work))
                _progress(runs[-1])
    rows = summarise(runs)
    info = machine()
    command = "python bench/eval_planted.py " + shlex.join(
        argv if argv is not None else sys.argv[1:]
    )
    text = report(rows, runs, info, command.strip())
    write_results(
        Path(args.out),
        text,
        {"command": command.strip(), "machine": info, "summary": rows, "runs": runs},
    )
    return 0


def _progress(run: dict[str, Any]) -> None:
    label = "random labels" if run["random_labels"] else f"effect {run['effect']:.2f}"
    print(
        f"eval: {run['size']} trajectories, {label}, seed {run['seed']}: {run['active']} active, "
        f"precision {_fmt(run['precision'])}, recall {_fmt(run['recall'])}, "
        f"missed {run['missed'] or 'none'}, false positives {run['false_positives'] or 'none'} "
        f"({run['seconds']}s)",
        file=sys.stderr,
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
