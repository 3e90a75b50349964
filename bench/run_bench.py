"""Throughput benchmark of the deterministic ``learn`` (``make bench``).

For each size: planted-rule trajectories (about 14 steps each, :func:`synth.generate_planted`)
are written as Chat JSONL in shards of 100,000; ``coach learn`` runs on them (JSONL input); the
canonical tables that run stored are copied as the Parquet input and ``learn`` runs on those
from a fresh store (Parquet input), then once more with no new traces (re-run). Every run is a
child process, so its peak RSS is its own. Writes ``<out>.md`` and ``<out>.json``.

Ingest figures (``--ingest-sizes``, ``--ingest-only``): ``ingest()`` alone, in a child process,
on the planted Chat JSONL and on 20 copies of the shared tau2 files and of the OpenInference and
Langfuse fixtures (copy ``k`` ends in ``k`` blank lines, so each is read, its records
deduplicated); each figure is printed with its ratio to DuckDB's own ``read_json`` of the same
files (the table materialised; lines it cannot parse skipped), timed in the same run.

Usage: python bench/run_bench.py [--sizes 10000,100000,1000000] [--inputs jsonl,parquet,rerun]
       [--work bench/data] [--out bench/results] [--profile] [--ingest-sizes 100000]
       [--ingest-only]

``--inputs parquet,rerun`` reuses the Parquet tables of an earlier JSONL run of that size.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
# the planted-set generator and the loopback LLM server live with the tests
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from machine import machine, machine_line, write_results  # noqa: E402

SHARD = 100_000
STAGES = ("ingest", "analyze", "extract", "merge+render")
INPUTS = ("jsonl", "parquet", "rerun")
TARGET_SECONDS, TARGET_RSS_GIB, TARGET_GROWTH, TARGET_RERUN = 120.0, 4.0, 11.0, 0.05
# issue 18: ingest at most 3x DuckDB read_json; the 1M JSONL learn under 60 s and 2 GiB
TARGET_INGEST_RATIO, TARGET_JSONL_SECONDS, TARGET_JSONL_RSS_GIB = 3.0, 60.0, 2.0

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
start = time.perf_counter()
from pipeline.config import Config
from pipeline.learn import learn
paths, data = sys.argv[1], Path(sys.argv[2])
config = Config(paths=(paths,), data_dir=data / "store", skillbook_dir=data / "skillbook",
                out_dir=data / "prompts")
profile = len(sys.argv) > 3
if profile:
    from pyinstrument import Profiler
    profiler = Profiler()
    profiler.start()
result = learn(config)
# from the summary: a re-run with nothing new reads no table for it
summary = result.summary()
if profile:
    profiler.stop()
    Path(sys.argv[3]).write_text(profiler.output_text(unicode=True, show_all=False))
print(json.dumps({
    "seconds": time.perf_counter() - start,
    "timings": result.timings,
    "trajectories": summary["trajectories"],
    "skills": summary["skills"],
    "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
}))
"""


INGEST_CHILD = r"""
import json, resource, sys, time
paths = json.loads(sys.argv[1])
from pipeline.ingest import ingest, schema
start = time.perf_counter()
traces = ingest(paths)
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "counts": traces.counts,
                  "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""

DUCKDB_CHILD = r"""
import json, sys, time
import duckdb
paths = json.loads(sys.argv[1])
con = duckdb.connect()
start = time.perf_counter()
for n, path in enumerate(paths):
    quoted = path.replace("'", "''")
    con.execute(f"create table t{n} as select * from read_json('{quoted}', union_by_name = true, "
                f"ignore_errors = true)")
print(json.dumps({"seconds": time.perf_counter() - start}))
"""

SHARED = Path("/work/shared/traces")
FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "formats"
COPIES = 20


def _child(code: str, paths: list[Path]) -> dict[str, Any]:
    command = [sys.executable, "-c", code, json.dumps([str(p) for p in paths])]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{command[:2]} on {paths[0]} ... failed:\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def replicate(sources: list[Path], directory: Path) -> list[Path]:
    """``COPIES`` copies of each of ``sources`` under ``directory`` (copy ``k`` with ``k``
    blank lines appended, so that no two files are the same bytes; ``#`` comment lines of JSON
    Lines fixtures left out)."""
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    out = []
    for k in range(COPIES):
        for source in sources:
            target = directory / f"{k:02d}-{source.name}"
            data = source.read_bytes()
            if source.is_relative_to(FIXTURES):  # their header comments (tests strip them too)
                data = b"".join(line for line in data.splitlines(True) if not line.startswith(b"#"))
            target.write_bytes(data + b"\n" * k)
            out.append(target)
    return out


def ingest_figures(sizes: list[int], work: Path) -> list[dict[str, Any]]:
    """``ingest()`` and DuckDB ``read_json`` seconds, same files, same run (see the module)."""
    sets: list[tuple[str, list[Path]]] = []
    for size in sizes:
        shards = sorted(generate(size, work / str(size)).glob("*.jsonl"))
        sets.append((f"chat-jsonl {size:,} planted", shards))
    tau2 = sorted((SHARED / "tau2").glob("*.json"))
    if tau2:
        sets.append((f"tau2 shared x{COPIES}", replicate(tau2, work / "tau2x")))
    for name in ("openinference", "langfuse"):
        fixtures = sorted(FIXTURES.glob(f"{name}_*"))
        sets.append((f"{name} fixtures x{COPIES}", replicate(fixtures, work / f"{name}x")))
    rows = []
    for label, paths in sets:
        duck = _child(DUCKDB_CHILD, paths)["seconds"]
        ours = _child(INGEST_CHILD, paths)
        row = {"set": label, "files": len(paths), "ingest_seconds": ours["seconds"]}
        row |= {"duckdb_seconds": duck, "ratio": ours["seconds"] / duck}
        row |= {
            "records_read": ours["counts"]["records_read"],
            "peak_rss_kib": ours["peak_rss_kib"],
        }
        rows.append(row)
        print(
            f"bench: ingest {label}: {row['ingest_seconds']:.2f}s = x{row['ratio']:.1f} DuckDB "
            f"read_json ({duck:.2f}s), peak RSS {row['peak_rss_kib'] / (1 << 20):.2f} GiB",
            file=sys.stderr,
            flush=True,
        )
    return rows


def duckdb_seconds(paths: Path) -> float:
    """DuckDB ``read_json`` of the JSON Lines shards under ``paths`` (materialised), seconds."""
    return float(_child(DUCKDB_CHILD, sorted(paths.glob("*.jsonl")))["seconds"])


def generate(size: int, directory: Path) -> Path:
    """Write ``size`` planted trajectories as JSONL shards under ``directory/jsonl`` (kept
    between runs: a ``done`` marker says the shards are complete)."""
    from synth import PlantedConfig, generate_planted

    target = directory / "jsonl"
    if (target / "done").exists():
        return target
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    handle = None
    for index, record in enumerate(generate_planted(PlantedConfig(n_trajectories=size, seed=1))):
        if index % SHARD == 0:
            if handle:
                handle.close()
            handle = (target / f"part-{index // SHARD:04d}.jsonl").open("w", encoding="utf-8")
        assert handle is not None
        handle.write(json.dumps(record) + "\n")
    if handle:
        handle.close()
    (target / "done").write_text(str(size))
    return target


def run_learn(paths: Path, data: Path, profile: Path | None = None) -> dict[str, Any]:
    """One ``learn`` in a child process; wall seconds (process start to end, imports included),
    per-stage seconds, peak RSS."""
    command = [sys.executable, "-c", CHILD, str(paths), str(data)]
    if profile is not None:
        command.append(str(profile))
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"learn on {paths} failed:\n{done.stderr[-4000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["wall_seconds"] = wall
    return result


def bench_size(
    size: int, work: Path, profile: bool, inputs: tuple[str, ...] = INPUTS
) -> list[dict[str, Any]]:
    directory = work / str(size)
    jsonl = generate(size, directory)
    rows = []
    for name in (n for n in INPUTS if n in inputs):
        data = directory / f"run-{'parquet' if name == 'rerun' else name}"
        if name != "rerun":
            shutil.rmtree(data, ignore_errors=True)
        if name == "jsonl":
            paths = jsonl
        else:
            paths = directory / "parquet"
            if name == "parquet":
                shutil.rmtree(paths, ignore_errors=True)
                paths.mkdir()
                for table in ("trajectories", "steps", "feedback"):
                    shutil.copy(
                        directory / "run-jsonl" / "store" / "tables" / f"{table}.parquet", paths
                    )
        prof = work / f"profile-{size}-{name}.txt" if profile else None
        result = run_learn(paths, data, prof)
        result |= {"size": size, "input": name}
        if name == "jsonl":  # the ingest stage against DuckDB reading the same shards
            result["duckdb_seconds"] = duckdb_seconds(paths)
        rows.append(result)
        print(
            f"bench: {size:,} trajectories, {name}: {result['wall_seconds']:.1f}s, peak RSS "
            f"{result['peak_rss_kib'] / (1 << 20):.2f} GiB, stages "
            + ", ".join(f"{k} {v:.1f}s" for k, v in result["timings"].items())
            + (
                f" (ingest x{result['timings']['ingest'] / result['duckdb_seconds']:.1f} DuckDB "
                f"read_json, {result['duckdb_seconds']:.2f}s)"
                if "duckdb_seconds" in result
                else ""
            ),
            file=sys.stderr,
            flush=True,
        )
    return rows


def llm_calls(size: int, work: Path) -> dict[str, Any]:
    """LLM calls of ``coach learn --llm`` on the Parquet input of ``size`` trajectories, against
    the scripted OpenAI-compatible loopback server of the tests (``tests/llm_server.py``), from
    a fresh store and LLM cache."""
    from llm_server import start_server

    directory = work / str(size)
    data = directory / "run-llm"
    shutil.rmtree(data, ignore_errors=True)
    server = start_server()
    try:
        command = [
            sys.executable, "-m", "pipeline", "learn", str(directory / "parquet"),
            "--data-dir", str(data / "store"), "--skillbook", str(data / "skillbook"),
            "--out", str(data / "prompts"), "--llm", "--base-url", server.base_url,
            "--model", "any", "--json", "-q",
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    finally:
        server.stop()
    if done.returncode != 0:
        raise SystemExit(f"learn --llm on {size} failed:\n{done.stderr[-4000:]}")
    summary = json.loads(done.stdout)
    calls = int(summary["llm_calls"])
    return {"size": size, "llm_calls": calls, "per_1000": calls * 1000 / size}


def ingest_lines(rows: list[dict[str, Any]], learn_rows: list[dict[str, Any]]) -> list[str]:
    """The Markdown of the ingest figures: each against DuckDB ``read_json`` of the same files,
    timed in the same run, and the targets of issue 18."""
    lines = [
        "",
        "## Ingest against DuckDB `read_json`",
        "",
        "`ingest()` alone in a child process; DuckDB: `create table as select * from",
        "read_json(file)` per file, in a child process, in the same run. The ratio is robust to",
        "a busy machine where the seconds are not.",
        "",
        "| input | files | records read | ingest (s) | DuckDB read_json (s) | ratio | peak RSS (GiB) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['set']} | {r['files']} | {r['records_read']:,} | {r['ingest_seconds']:.2f} | "
            f"{r['duckdb_seconds']:.2f} | x{r['ratio']:.1f} | {r['peak_rss_kib'] / (1 << 20):.2f} |"
        )
    for r in learn_rows:
        if "duckdb_seconds" in r:
            ratio = r["timings"].get("ingest", 0.0) / r["duckdb_seconds"]
            lines.append(
                f"| learn's ingest stage, {r['size']:,} planted | | | {r['timings'].get('ingest', 0.0):.2f} "
                f"| {r['duckdb_seconds']:.2f} | x{ratio:.1f} | |"
            )
    chat = [r for r in rows if r["set"].startswith("chat-jsonl 100,000")]
    if chat:
        met = chat[0]["ratio"] <= TARGET_INGEST_RATIO
        lines += [
            "",
            f"- ingest of 100,000 planted Chat JSONL: x{chat[0]['ratio']:.1f} DuckDB read_json "
            f"({'met' if met else 'MISSED'}: at most x{TARGET_INGEST_RATIO:g})",
        ]
    big = [r for r in learn_rows if r["size"] == 1_000_000 and r["input"] == "jsonl"]
    if big:
        rss = big[0]["peak_rss_kib"] / (1 << 20)
        fast = big[0]["wall_seconds"] < TARGET_JSONL_SECONDS and rss < TARGET_JSONL_RSS_GIB
        lines.append(
            f"- 1,000,000 JSONL learn: {big[0]['wall_seconds']:.1f}s, peak RSS {rss:.2f} GiB "
            f"({'met' if fast else 'MISSED'}: under {TARGET_JSONL_SECONDS:.0f}s and "
            f"{TARGET_JSONL_RSS_GIB:g} GiB)"
        )
    return lines


def report(
    rows: list[dict[str, Any]],
    info: dict[str, Any],
    command: str,
    llm: list[dict[str, Any]] | None = None,
    ingest_rows: list[dict[str, Any]] | None = None,
) -> str:
    lines = [
        "# Throughput of the deterministic learn",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {machine_line(info)}",
        "",
        "Input: planted-rule trajectories (`tests/synth.py: generate_planted`, seed 1), about",
        "14 steps each. *jsonl*: Chat JSONL shards of 100,000; *parquet*: the canonical tables",
        "(Parquet) that the JSONL run stored, learned into a fresh store; *rerun*: the same",
        "command again with no new traces. Wall time is the whole child process (imports",
        "included); stages as `learn` times them. Peak RSS of the child process.",
        "",
        "| trajectories | input | wall (s) | ingest (s) | analyze (s) | extract (s) | "
        "merge+render (s) | trajectories/s | peak RSS (GiB) |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        t = r["timings"]
        lines.append(
            f"| {r['size']:,} | {r['input']} | {r['wall_seconds']:.2f} | "
            + " | ".join(f"{t.get(s, 0.0):.1f}" for s in STAGES)
            + f" | {r['size'] / r['wall_seconds']:,.0f} | {r['peak_rss_kib'] / (1 << 20):.2f} |"
        )
    lines += ingest_lines(ingest_rows or [], rows)
    lines += ["", "Growth (time at 10x the trajectories / time):", ""]
    by = {(r["size"], r["input"]): r for r in rows}
    sizes = sorted({r["size"] for r in rows})
    growth = []
    for small, large in zip(sizes, sizes[1:], strict=False):
        for name in ("jsonl", "parquet"):
            if (small, name) in by and (large, name) in by:
                ratio = by[(large, name)]["wall_seconds"] / by[(small, name)]["wall_seconds"]
                scale = large / small
                growth.append((name, small, large, ratio, scale))
                lines.append(f"- {name}: {small:,} -> {large:,}: x{ratio:.1f} (size x{scale:g})")
    lines += ["", "## Targets", ""]
    largest = max(sizes)
    big = by.get((largest, "parquet"))
    if big is not None:
        rss = big["peak_rss_kib"] / (1 << 20)
        fast, small_rss = big["wall_seconds"] < TARGET_SECONDS, rss < TARGET_RSS_GIB
        lines.append(
            f"- {largest:,} trajectories from Parquet: {big['wall_seconds']:.1f}s "
            f"({'met' if fast else 'MISSED'}: under {TARGET_SECONDS:.0f}s); peak RSS "
            f"{rss:.2f} GiB ({'met' if small_rss else 'MISSED'}: under {TARGET_RSS_GIB:.0f} GiB)"
        )
    for name, small, large, ratio, scale in growth:
        limit = TARGET_GROWTH * scale / 10
        lines.append(
            f"- growth {name} {small:,} -> {large:,}: x{ratio:.1f} "
            f"({'met' if ratio <= limit else 'MISSED'}: at most x{limit:g})"
        )
    for size in sizes:
        if (size, "rerun") in by and (size, "parquet") in by:
            share = by[(size, "rerun")]["wall_seconds"] / by[(size, "parquet")]["wall_seconds"]
            lines.append(
                f"- re-run with no new traces, {size:,}: {share:.1%} of the first run "
                f"({'met' if share <= TARGET_RERUN else 'MISSED'}: at most "
                f"{TARGET_RERUN:.0%})"
            )
    lines += [
        "",
        "## LLM calls per 1,000 trajectories",
        "",
        "| mode | LLM calls per 1,000 trajectories |",
        "|---|---:|",
        "| deterministic `learn` (this benchmark) | 0 |",
        "| one call per trajectory (baseline) | 1,000 |",
    ]
    for item in llm or []:
        lines.append(
            f"| `learn --llm`, {item['size']:,} trajectories (Parquet, scripted loopback server): "
            f"{item['llm_calls']} calls | {item['per_1000']:.2f} |"
        )
    if not llm:
        lines.append("| `learn --llm` | not measured in this run (`--llm-sizes`) |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument(
        "--inputs",
        default=",".join(INPUTS),
        help="inputs to run per size (parquet and rerun need an earlier jsonl run of the size)",
    )
    parser.add_argument("--work", default="bench/data")
    parser.add_argument("--out", default="bench/results")
    parser.add_argument("--profile", action="store_true", help="pyinstrument text per run")
    parser.add_argument(
        "--ingest-sizes",
        default="100000",
        help="planted sizes for the ingest figures ('' for none)",
    )
    parser.add_argument(
        "--ingest-only", action="store_true", help="only the ingest figures (no learn, no LLM)"
    )
    parser.add_argument(
        "--llm-sizes", default="10000,100000", help="sizes to count --llm calls on ('' for none)"
    )
    parser.add_argument(
        "--llm-only",
        action="store_true",
        help="keep the timings of <out>.json and only (re)measure the LLM calls",
    )
    args = parser.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    out = Path(args.out)
    inputs = tuple(n.strip() for n in args.inputs.split(",") if n.strip())
    if unknown := set(inputs) - set(INPUTS):
        parser.error(f"unknown --inputs {sorted(unknown)}; choose from {', '.join(INPUTS)}")
    sizes = [int(s) for s in args.ingest_sizes.split(",") if s.strip()]
    ingest_rows = [] if args.llm_only else ingest_figures(sizes, work)
    if args.ingest_only:
        command = "python bench/run_bench.py " + shlex.join(
            argv if argv is not None else sys.argv[1:]
        )
        text = "# Ingest throughput\n\n" + f"Command: `{command.strip()}`\n\n"
        text += (
            f"Machine: {machine_line(machine())}\n"
            + "\n".join(ingest_lines(ingest_rows, []))
            + "\n"
        )
        write_results(out, text, {"command": command.strip(), "ingest": ingest_rows})
        return 0
    if args.llm_only:
        previous = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
        rows, info, command = previous["runs"], previous["machine"], previous["command"]
    else:
        rows = []
        for size in (int(s) for s in args.sizes.split(",")):
            rows.extend(bench_size(size, work, args.profile, inputs))
        info = machine()
        command = "python bench/run_bench.py " + shlex.join(
            argv if argv is not None else sys.argv[1:]
        )
    llm = [llm_calls(int(s), work) for s in args.llm_sizes.split(",") if s.strip()]
    for item in llm:
        print(f"bench: learn --llm on {item['size']:,}: {item['llm_calls']} calls", file=sys.stderr)
    text = report(rows, info, command.strip(), llm, ingest_rows)
    write_results(
        out,
        text,
        {
            "command": command.strip(),
            "machine": info,
            "runs": rows,
            "llm": llm,
            "ingest": ingest_rows,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
