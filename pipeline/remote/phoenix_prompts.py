"""Register coach's rendered prompts in Phoenix's prompt management, once per prompt version.

Each arm of each namespace of ``prompts_out/manifest.json`` (:mod:`pipeline.experiment.manifest`)
becomes a version of the Phoenix prompt named :func:`prompt_name` (``coach-domain-airline-control``):
a chat template with the prompt file's text as its system message (``template_format`` NONE:
Phoenix substitutes nothing), coach's ``prompt_version`` in the version's ``description`` and
``metadata`` (with the namespace, arm, experiment and skill ids) and as a tag named after it
(``pv-...``). A runtime that fetches the prompt by that tag, or reads the metadata, records the
same ``prompt_version`` in its spans (``llm.prompt_template.version``), and coach reads it back
as the version the run used (docs/experiments.md).

Phoenix's own id of each version (``data.id`` of the answers below, a Relay Global ID such as
``UHJvbXB0VmVyc2lvbjox``) is what Phoenix's client hands an application that fetches the prompt
(``PromptVersion.id`` of ``client.prompts.get(prompt_identifier=name, tag="pv-...")``), so a
runtime may record that id as ``llm.prompt_template.version`` instead. The push records it as an
*alias* of the arm's entries in the version history beside the Skillbook
(``prompt_versions.jsonl``, :func:`pipeline.experiment.record_aliases`), so ``coach learn``
resolves such a run to coach's ``prompt_version`` (method ``recorded``). The ids are numbered per
server: keep one Phoenix server per Skillbook.

Pushing is idempotent: an arm whose prompt already has a version tagged with its
``prompt_version`` is left as it is (its alias is still recorded).

Phoenix REST API (``phoenix/server/api/routers/v1/prompts.py``, arize-phoenix 20):
``GET /v1/prompts/{name}/tags/{tag}`` (404: no such version), ``POST /v1/prompts`` with
``{"prompt": {"name", "description", "metadata"}, "version": {...}}`` (creates the prompt or
adds a version to it), ``POST /v1/prompt_versions/{id}/tags`` with ``{"name", "description"}``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import InputError, RemoteError
from pipeline.experiment import load_manifest
from pipeline.remote.http import NOT_FOUND, JsonClient
from pipeline.remote.push import PromptPush, failed_after_some

__all__ = ["PushResult", "prompt_name", "push_prompts_phoenix"]


def prompt_name(prefix: str, namespace: str, arm: str) -> str:
    """The Phoenix prompt name of an arm: ``prefix``, namespace and arm in lower case joined by
    ``-``, every run of other characters than letters, digits and ``_`` as one ``-``
    (Phoenix names match ``^[a-z0-9]([_a-z0-9-]*[a-z0-9])?$``)."""
    text = "-".join((prefix, namespace, arm)).lower()
    return re.sub(r"[^a-z0-9_]+", "-", text).strip("-_")


@dataclass
class PushResult(PromptPush):
    """What a push to Phoenix did (:class:`~pipeline.remote.push.PromptPush`): each row's own
    version field is ``phoenix_version_id`` and its ``alias`` the same id; ``endpoint`` is the
    server."""

    TARGET = "phoenix"
    ADDRESS = "endpoint"

    endpoint: str


def push_prompts_phoenix(
    client: JsonClient,
    out_dir: Path,
    *,
    history_dir: Path | None = None,
    prefix: str = "coach",
    model_provider: str = "OPENAI",
    model_name: str = "gpt-4o-mini",
    progress: Callable[[str], None] = lambda _m: None,
) -> PushResult:
    """Register every arm of ``out_dir/manifest.json`` in Phoenix (see the module docstring)
    and record each version's Phoenix id as an alias of its ``prompt_version`` in
    ``history_dir/prompt_versions.jsonl`` (under the Skillbook lock; ``history_dir`` None: no
    aliases). ``model_provider`` (a Phoenix provider: OPENAI, ANTHROPIC, ...) and
    ``model_name`` fill the fields Phoenix requires of a prompt version.

    Raises:
        InputError: the manifest is missing or fails its checks, a prompt file is missing, or
            the version history has a line that is not an entry.
        RemoteError: the server is down, refuses the key, or rejects a prompt. When it happens
            after some versions were created, their aliases are recorded first and the message
            says so: pushing again skips what is there.
        LockError: another coach run holds the Skillbook lock (the versions are registered;
            pushing again records the aliases).
    """
    result = PushResult(client.base_url)
    try:
        _push(client, out_dir, prefix, model_provider, model_name, progress, result)
    except RemoteError as exc:
        if not result.created:
            raise
        raise failed_after_some(exc, result, history_dir) from exc
    if history_dir is not None:
        result.record(history_dir)
    return result


def _push(
    client: JsonClient,
    out_dir: Path,
    prefix: str,
    model_provider: str,
    model_name: str,
    progress: Callable[[str], None],
    result: PushResult,
) -> None:
    manifest = load_manifest(out_dir / "manifest.json")
    for namespace, entry in sorted(manifest.get("namespaces", {}).items()):
        experiment = entry.get("experiment") or {}
        for arm in entry.get("arms", []):
            name = prompt_name(prefix, namespace, arm["arm"])
            version = arm["prompt_version"]
            row = {
                "name": name,
                "namespace": namespace,
                "arm": arm["arm"],
                "prompt_version": version,
                "file": arm["file"],
            }
            existing = client.get(f"/v1/prompts/{name}/tags/{version}", allow_404=True)
            if existing is not NOT_FOUND:
                found = _id(existing, client)
                row |= {"status": "unchanged", "phoenix_version_id": found, "alias": found}
                result.rows.append(row)
                continue
            try:
                text = (out_dir / arm["file"]).read_text(encoding="utf-8")
            except OSError as exc:
                raise InputError(
                    f"{out_dir / arm['file']}: cannot read the prompt of {namespace} "
                    f"{arm['arm']} ({exc}); render again with 'coach render'"
                ) from exc
            metadata = {
                "coach_prompt_version": version,
                "namespace": namespace,
                "arm": arm["arm"],
                "experiment_id": experiment.get("id"),
                "skill_ids": list(arm.get("skill_ids", [])),
                "file": arm["file"],
            }
            body = {
                "prompt": {
                    "name": name,
                    "description": f"coach: the {arm['arm']} prompt of {namespace}",
                    "metadata": {"source": "coach", "namespace": namespace, "arm": arm["arm"]},
                },
                "version": {
                    "description": f"coach prompt_version {version}",
                    "metadata": metadata,
                    "model_provider": model_provider,
                    "model_name": model_name,
                    "template": {"type": "chat", "messages": [{"role": "system", "content": text}]},
                    "template_type": "CHAT",
                    "template_format": "NONE",
                    "invocation_parameters": {
                        "type": model_provider.lower(),
                        model_provider.lower(): {},
                    },
                },
            }
            created = _id(client.post("/v1/prompts", body), client)
            client.post(
                f"/v1/prompt_versions/{created}/tags",
                {"name": version, "description": f"coach prompt_version of {namespace}"},
            )
            progress(f"phoenix: {name} {version} registered")
            result.rows.append(
                row | {"status": "created", "phoenix_version_id": created, "alias": created}
            )


def _id(body: Any, client: JsonClient) -> str:
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, dict) or not isinstance(data.get("id"), str):
        raise RemoteError(
            f"Phoenix at {client.base_url} sent a prompt version without an id: {str(body)[:200]}"
        )
    return data["id"]
