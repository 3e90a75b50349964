"""The machine a benchmark ran on, and the commit it ran at, for the results files; writing
those files."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path


def machine() -> dict[str, object]:
    """``nproc`` (CPUs usable), ``ram_gib`` (total memory), ``python``, ``platform``,
    ``cpu`` (model name, where /proc/cpuinfo has it) and ``commit`` (git HEAD, if any)."""
    ram = None
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = round(int(line.split()[1]) / (1 << 20), 1)
    cpu = platform.processor() or None
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    try:
        commit = (
            subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"],
                capture_output=True,
                text=True,
                check=False,
                cwd=Path(__file__).parent,
            ).stdout.strip()
            or None
        )
    except OSError:
        commit = None
    return {
        "nproc": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "ram_gib": ram,
        "cpu": cpu,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "commit": commit,
    }


def machine_line(info: dict[str, object]) -> str:
    """One line for a Markdown report."""
    return (
        f"{info['nproc']} CPUs ({info['cpu']}), {info['ram_gib']} GiB RAM, Python "
        f"{info['python']}, {info['platform']}, commit {info['commit']}"
    )


def write_results(out: Path, text: str, data: dict[str, object]) -> None:
    """Write ``text`` (Markdown) to ``<out>.md`` and ``data`` (indented JSON) to ``<out>.json``,
    creating ``out``'s directory, then print ``text``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(text, encoding="utf-8")
    out.with_suffix(".json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    print(text)
