"""Ingest per format, the column-wise readers against the record-by-record path they replace,
timed in the same run on the same files.

Inputs (generated under ``--work``, by default in /tmp; nothing large is written in the
repository):

- *tau2 shared x20*: 20 copies of the shared tau2 files (``../shared/traces/tau2``; copy ``k``
  ends in ``k`` blank lines, so each file is read and its runs deduplicated, as in
  ``bench/run_bench.py``);
- *canonical JSONL*: ``--canonical`` planted trajectories (``tests/synth.py``) ingested as Chat
  JSONL and written back as canonical JSONL (a trajectory row per line with its ``steps`` and
  ``feedback`` nested, times as ISO-8601 text).

Each figure is one ``ingest()`` call in a child process (imports excluded, the first pandas
import included), wall and CPU seconds; ``--repeat`` runs of each path alternate and the
median is reported. *old*: documents parsed by ``load_json`` (Python's json and a walk for the
depth limit), every tau2 simulation built into rows and hashed by them (none known as a
duplicate by its source hash before its rows are built), the canonical sniffer splitting the
whole head, canonical lines read one by one (no line reaches the column-wise mapper).
*new*: as shipped. Both must give the same counts (checked).

Usage: python bench/ingest_formats.py [--work /tmp/coach-bench-formats] [--repeat 3]
       [--canonical 20000] [--out bench/out/ingest_formats]
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from machine import machine, machine_line, write_results  # noqa: E402
from run_bench import SHARED, generate, replicate  # noqa: E402

CHILD = r"""
import json, sys, time
paths, old = json.loads(sys.argv[1]), sys.argv[2] == "old"
from pipeline.ingest import ingest
from pipeline.ingest.formats import _linebatch, canonical, tau2
from pipeline.ingest.formats._io import load_json
if old:
    tau2.read_document = lambda path, limit: (load_json(path, limit), False)
    tau2._source_digest = lambda *args: None
    _linebatch._candidate = lambda line: False
    canonical._leading_lines = lambda head: head
start, cpu = time.perf_counter(), time.process_time()
traces = ingest(paths)
print(json.dumps({"seconds": time.perf_counter() - start, "cpu": time.process_time() - cpu,
                  "counts": traces.counts}))
"""


def _run(paths: list[Path], path: str) -> dict[str, Any]:
    command = [sys.executable, "-c", CHILD, json.dumps([str(p) for p in paths]), path]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"ingest ({path}) failed:\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def canonical_jsonl(size: int, work: Path) -> Path:
    """``size`` planted trajectories as one canonical JSONL file under ``work`` (kept)."""
    target = work / f"canonical-{size}.jsonl"
    if target.exists():
        return target
    from pipeline.ingest import ingest

    traces = ingest(sorted(generate(size, work / f"planted-{size}").glob("*.jsonl")))
    steps: dict[str, list[dict[str, Any]]] = {}
    for row in traces.steps.to_pylist():
        steps.setdefault(row["trajectory_id"], []).append(row)
    feedback: dict[str, list[dict[str, Any]]] = {}
    for row in traces.feedback.to_pylist():
        feedback.setdefault(row["trajectory_id"], []).append(row)

    def iso(value: Any) -> Any:
        return value.isoformat() if hasattr(value, "isoformat") else value

    with target.open("w", encoding="utf-8") as handle:
        for row in traces.trajectories.to_pylist():
            tid = row["trajectory_id"]
            record = {k: iso(v) for k, v in row.items() if k != "record_sha256"}
            record["steps"] = [{k: iso(v) for k, v in s.items()} for s in steps.get(tid, [])]
            record["feedback"] = feedback.get(tid, [])
            handle.write(json.dumps(record) + "\n")
    return target


def figures(label: str, paths: list[Path], repeat: int) -> dict[str, Any]:
    """Median seconds of each path over ``repeat`` alternating runs."""
    runs: dict[str, list[dict[str, Any]]] = {"old": [], "new": []}
    for _ in range(repeat):
        for path in ("old", "new"):
            runs[path].append(_run(paths, path))
    counts = {path: [r["counts"] for r in results] for path, results in runs.items()}
    if any(c != counts["old"][0] for c in counts["old"] + counts["new"]):
        raise SystemExit(f"{label}: counts differ: {counts}")
    row: dict[str, Any] = {
        "set": label,
        "files": len(paths),
        "records_read": counts["new"][0]["records_read"],
    }
    for key in ("seconds", "cpu"):
        for path in ("old", "new"):
            row[f"{path}_{key}"] = statistics.median(r[key] for r in runs[path])
        row[f"speedup_{key}"] = row[f"old_{key}"] / row[f"new_{key}"]
    row["runs"] = runs
    print(
        f"bench: {label}: old {row['old_seconds']:.2f}s, new {row['new_seconds']:.2f}s "
        f"(x{row['speedup_seconds']:.1f}; CPU x{row['speedup_cpu']:.1f})",
        file=sys.stderr,
    )
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default="/tmp/coach-bench-formats")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--canonical", type=int, default=20_000, help="0: no canonical set")
    parser.add_argument("--out", default="bench/out/ingest_formats")
    args = parser.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    tau2 = sorted((SHARED / "tau2").glob("*.json"))
    if tau2:
        rows.append(figures("tau2 shared x20", replicate(tau2, work / "tau2x"), args.repeat))
    if args.canonical:
        path = canonical_jsonl(args.canonical, work)
        rows.append(figures(f"canonical JSONL {args.canonical:,}", [path], args.repeat))
    command = "python bench/ingest_formats.py " + shlex.join(
        argv if argv is not None else sys.argv[1:]
    )
    lines = [
        "# Ingest per format: column-wise against record by record",
        "",
        f"Command: `{command.strip()}`",
        "",
        f"Machine: {machine_line(machine())}",
        "",
        f"Median of {args.repeat} alternating runs, each `ingest()` in a child process.",
        "",
        "| input | files | records read | old (s) | new (s) | speed-up | old CPU (s) | "
        "new CPU (s) | CPU speed-up |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['set']} | {r['files']} | {r['records_read']:,} | {r['old_seconds']:.2f} | "
            f"{r['new_seconds']:.2f} | x{r['speedup_seconds']:.1f} | {r['old_cpu']:.2f} | "
            f"{r['new_cpu']:.2f} | x{r['speedup_cpu']:.1f} |"
        )
    write_results(Path(args.out), "\n".join(lines) + "\n", {"command": command, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
