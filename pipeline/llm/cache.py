"""The LLM response cache of :class:`pipeline.llm.LLMClient`: a DuckDB file (table
``llm_cache``, one row per (model, endpoint, prompt_sha256)), so that a request already
answered is served from it and costs nothing.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import duckdb

from pipeline.errors import ConfigError
from pipeline.llm.types import Reply, Request

__all__ = ["ResponseCache"]


class ResponseCache:
    """The DuckDB response cache at ``path``, one row per (model, endpoint, prompt_sha256):
    columns ``request`` (the messages and schema as JSON text), ``response`` and ``refusal``
    (text, one of them null), ``input_tokens`` and ``output_tokens`` (integers) and
    ``created_at`` (ISO-8601 UTC text). The file and its directory are created when missing.

    Thread-safe: every statement runs under one lock.

    Raises:
        ConfigError: the cache file cannot be opened.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.con = duckdb.connect(str(path))
            self.con.execute(
                """create table if not exists llm_cache (
                    model varchar, endpoint varchar, prompt_sha256 varchar,
                    request varchar, response varchar, refusal varchar,
                    input_tokens integer, output_tokens integer, created_at varchar,
                    primary key (model, endpoint, prompt_sha256))"""
            )
        except duckdb.Error as exc:
            raise ConfigError(
                f"{path}: cannot open the LLM cache ({exc}); another coach run may be using it, "
                "or delete the file to start a new cache"
            ) from exc
        self.lock = threading.Lock()

    def get(self, model: str, endpoint: str, key: str) -> tuple[Any, ...] | None:
        """The cached ``(response, refusal, input_tokens, output_tokens)`` of the request whose
        :func:`~pipeline.llm.types.prompt_hash` is ``key``, sent to ``model`` at ``endpoint``;
        None when it was never answered."""
        with self.lock:
            return self.con.execute(
                "select response, refusal, input_tokens, output_tokens from llm_cache "
                "where model = ? and endpoint = ? and prompt_sha256 = ?",
                [model, endpoint, key],
            ).fetchone()

    def put(self, model: str, endpoint: str, key: str, request: Request, reply: Reply) -> None:
        """Keep ``reply`` (its text or refusal and tokens) to ``request`` under ``(model,
        endpoint, key)``, replacing an earlier row."""
        with self.lock:
            self.con.execute(
                "insert or replace into llm_cache values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    model,
                    endpoint,
                    key,
                    json.dumps({"messages": list(request.messages), "schema": request.schema}),
                    reply.text,
                    reply.refusal,
                    reply.input_tokens,
                    reply.output_tokens,
                    time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                ],
            )

    def close(self) -> None:
        """Close the DuckDB file."""
        with self.lock:
            self.con.close()
