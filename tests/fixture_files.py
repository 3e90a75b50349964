"""Format fixtures with a header: ``tests/fixtures/formats/<file>``.

JSON has no comments, so each fixture opens with ``#`` lines that say which specification (document,
URL and version) the records follow; :func:`fixture_file` strips them and writes the body under
the original name into a temporary folder, where it is exactly what an exporter would write.
"""

from __future__ import annotations

from pathlib import Path

FORMATS = Path(__file__).resolve().parent / "fixtures" / "formats"


def fixture_header(name: str) -> str:
    """The ``#`` header lines of fixture ``name``, without the ``#``."""
    lines = (FORMATS / name).read_text(encoding="utf-8").splitlines()
    header = []
    for line in lines:
        if not line.startswith("#"):
            break
        header.append(line.lstrip("#").strip())
    return "\n".join(header)


def fixture_file(name: str, directory: Path) -> Path:
    """Write fixture ``name`` without its header to ``directory/name`` and return that path."""
    lines = (FORMATS / name).read_text(encoding="utf-8").splitlines(keepends=True)
    body = "".join(line for line in lines if not line.startswith("#"))
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body, encoding="utf-8")
    return path
