"""Shared fixtures: paths to the shipped and shared traces, and a planted synthetic data set."""

from __future__ import annotations

from pathlib import Path

import pytest
from synth import SynthConfig, generate, write_jsonl

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "traces"


@pytest.fixture(scope="session")
def shipped_traces() -> Path:
    """The airline traces shipped in traces/ (the default input of make learn)."""
    if not (SHIPPED / "tau-bench").exists():
        pytest.skip("traces/ does not hold the shipped airline traces")
    return SHIPPED


@pytest.fixture(scope="session")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Chat JSONL with one planted harmful behaviour (unconfirmed write), one confound
    (booking tasks are harder) and one noise tool."""
    path = tmp_path_factory.mktemp("planted") / "planted.jsonl"
    return write_jsonl(path, generate(SynthConfig(seed=7)))
