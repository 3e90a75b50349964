"""Register coach's rendered prompts in Langfuse prompt management, once per prompt version, and
remember which Langfuse version is which ``prompt_version``.

Each arm of each namespace of ``prompts_out/manifest.json`` (:mod:`pipeline.experiment.manifest`)
becomes a version of the Langfuse prompt named
:func:`~pipeline.remote.phoenix_prompts.prompt_name` (``coach-domain-airline-control``): a
``text`` prompt holding the prompt file's text (or, with ``prompt_type="chat"``, one system
message), **labelled** with coach's ``prompt_version`` (``pv-...``), with
``config = {"coach": {"prompt_version", "namespace", "arm", "experiment_id", "skill_ids",
"file"}}``, the tag ``coach`` and a commit message naming the version.

Why a label and not a tag: Langfuse tags are the same on every version of a prompt (setting them
on a new version sets them on all), while a label belongs to one version at a time (a new version
that carries it takes it from the old one). A ``pv-...`` label names exactly one version, so a
runtime fetches the arm's version with ``get_prompt(name, label="pv-...")`` and a push finds what
an earlier push registered. Labels match ``^[a-z0-9_\\-.]+$`` and have at most 36 characters: a
``pv-`` and 16 hex digits fits.

Read back: a generation linked to a Langfuse prompt carries ``promptName`` and ``promptVersion``,
which the ``langfuse`` format records as ``langfuse:<name>:<version>``
(:func:`pipeline.ingest.formats._prompt_version.langfuse_prompt_version`). The push records that
name as an *alias* of the arm's entries in the version history beside the Skillbook
(``prompt_versions.jsonl``, :class:`pipeline.experiment.VersionHistory`), so ``coach learn``
resolves such a trace to coach's ``prompt_version`` (method ``recorded``). A runtime may as well
copy ``config["coach"]["prompt_version"]`` into the trace metadata's ``prompt_version``, which the
adapter reads first.

Pushing is idempotent: an arm whose prompt has a version labelled with its ``prompt_version``
and holding its text is left as it is (its alias is still recorded). Everything is read before
anything is written: the prompt files, then for every arm the labelled version and, when there is
none, the prompt's metadata (its type and tags, which the new version keeps: Langfuse replaces
the tags of every version with those a new version sends). A retried ``POST`` first looks for the
label, so a version stored before a 5xx is not registered twice.

Langfuse public API, from langfuse/langfuse ``fern/apis/server/definition/prompts.yml`` (commit
0a6c2c4297bda01599a24e9cc0cbc2b79041076d) and the route code:

- ``GET /api/public/v2/prompts/{promptName}?label=L`` (or ``?version=N``): a ``Prompt``
  (``{"id", "name", "version": int, "type": "text" | "chat", "prompt", "labels", "tags",
  "config", "commitMessage", "createdAt", "updatedAt", "projectId", "createdBy",
  "resolutionGraph"}``); 404 ``{"message": "Prompt not found: ...", "error":
  "LangfuseNotFoundError"}`` (``web/src/features/prompts/server/handlers/promptNameHandler.ts``,
  commit 0ca293ddefd27f1a8823b2fd1fda715221817bc7);
- ``GET /api/public/v2/prompts?name=N``: ``{"data": [PromptMeta {"name", "type", "versions",
  "labels", "tags", "lastUpdatedAt", "lastConfig"}], "meta": {...}}``, ``name`` compared
  exactly (``web/src/features/prompts/server/actions/getPromptsMeta.ts``, commit
  07ac1d6709dfdc0bab024c5226cd60b762e14c91);
- ``POST /api/public/v2/prompts`` with ``{"name", "type", "prompt", "labels", "tags", "config",
  "commitMessage"}`` (``CreateTextPromptSchema`` / ``CreateChatPromptSchema``,
  ``packages/shared/src/features/prompts/types.ts``, commit
  146d9bdf0ea32a5d482e5a9b154364fe9a49f1aa): 201 with the stored version, its ``version`` one
  more than the last and ``latest`` added to its labels
  (``web/src/features/prompts/server/actions/createPrompt.ts``, commit
  0226618d357e39f6adb614c3b22547d56fe59353); 400 when the prompt's earlier versions are of the
  other type.

All with HTTP basic auth (public key, secret key), as :mod:`pipeline.remote.langfuse`.
"""

from __future__ import annotations

import dataclasses
import re
import urllib.error
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError, InputError, RemoteError
from pipeline.experiment import load_manifest, prompt_version
from pipeline.remote.http import NOT_FOUND, RETRY_STATUSES, JsonClient, Retry
from pipeline.remote.langfuse import langfuse_client, langfuse_json_client
from pipeline.remote.phoenix_prompts import prompt_name
from pipeline.remote.push import PromptPush, failed_after_some

__all__ = [
    "PROMPT_TAG",
    "PROMPT_TYPES",
    "LangfusePushResult",
    "langfuse_alias",
    "langfuse_prompts_client",
    "push_prompts_langfuse",
]

PROMPTS = "/api/public/v2/prompts"
PROMPT_TAG = "coach"  # the tag every prompt coach registers carries
PROMPT_TYPES = ("text", "chat")
# packages/shared/src/features/prompts/constants.ts (19c3311329cc07e0635c96956cacbdf3cf2f1c4b)
_LABEL = re.compile(r"[a-z0-9_\-.]{1,36}")
_MAYBE_STORED = (
    "the version may have been stored: push again, which finds it by its label {label} "
    "instead of adding another"
)


def langfuse_alias(name: str, version: int) -> str:
    """The name a trace linked to version ``version`` of the Langfuse prompt ``name`` records:
    ``langfuse:<name>:<version>``, as the ``langfuse`` format writes it."""
    return f"langfuse:{name.strip()}:{version}"


def langfuse_prompts_client(
    host: str,
    env: Mapping[str, str] | None = None,
    *,
    timeout_s: float = 30.0,
    retry: Retry | None = None,
) -> JsonClient:
    """A :class:`~pipeline.remote.http.JsonClient` for the Langfuse server at ``host`` with basic
    auth from ``LANGFUSE_PUBLIC_KEY`` and ``LANGFUSE_SECRET_KEY`` (the environment only), and
    ``retry`` (default: 4 retries of 429 and 5xx, after ``Retry-After``, else 1, 2, 4, 8 s).

    Raises:
        ConfigError: either variable is unset or empty.
    """
    keys = langfuse_client(host, env)
    return langfuse_json_client(
        host,
        keys.public_key,
        keys.secret_key,
        timeout_s=timeout_s,
        retry=Retry() if retry is None else retry,
    )


@dataclass
class LangfusePushResult(PromptPush):
    """What a push to Langfuse did (:class:`~pipeline.remote.push.PromptPush`): each row's own
    version field is ``langfuse_version`` (int) and its ``alias``
    ``langfuse:<name>:<version>``; ``host`` is the server."""

    TARGET = "langfuse"
    ADDRESS = "host"

    host: str


@dataclass
class _Arm:
    name: str
    namespace: str
    arm: str
    version: str
    file: str
    text: str
    config: dict[str, Any]
    found: int | None = None  # the Langfuse version that already carries the label
    tags: list[str] = field(default_factory=list)


def push_prompts_langfuse(
    client: JsonClient,
    out_dir: Path,
    *,
    history_dir: Path | None = None,
    prefix: str = "coach",
    prompt_type: str = "text",
    progress: Callable[[str], None] = lambda _m: None,
) -> LangfusePushResult:
    """Register every arm of ``out_dir/manifest.json`` in Langfuse (see the module docstring)
    and record each version's :func:`langfuse_alias` in ``history_dir/prompt_versions.jsonl``
    (under the Skillbook lock; ``history_dir`` None: no aliases). ``prompt_type``: ``text`` or
    ``chat`` (the prompt text as one system message).

    Raises:
        InputError: the manifest is missing or fails its checks, or a prompt file is missing.
        ConfigError: ``prompt_type`` is unknown, or a prompt of that name holds versions of the
            other type (nothing is written).
        RemoteError: the server is down, refuses the keys, keeps answering 429 or 5xx, or
            sends an answer that is cut off or not what the API documents. When it happens
            after some versions were created, the message names them (their aliases are
            recorded first) and says to push again: what is there is then skipped.
        LockError: another coach run holds the Skillbook lock (the versions are registered;
            pushing again records the aliases).
    """
    if prompt_type not in PROMPT_TYPES:
        raise ConfigError(f"prompt type {prompt_type!r}: use one of {', '.join(PROMPT_TYPES)}")
    arms = _read_arms(out_dir, prefix)
    for arm in arms:  # every read before any write
        found = _by_label(client, arm.name, arm.version)
        if found is not None and prompt_version(_text(found) or "") == arm.version:
            arm.found = found["version"]  # else the label was moved by hand: label anew
            continue
        meta = _meta(client, arm.name)
        if meta is not None and meta.get("type") not in (None, prompt_type):
            raise ConfigError(
                f"the Langfuse prompt {arm.name} at {client.base_url} holds {meta['type']} "
                f"versions, and Langfuse keeps one type per prompt: push with --type "
                f"{meta['type']}, or under another --prefix"
            )
        listed = (meta or {}).get("tags")
        tags = [t for t in listed if isinstance(t, str)] if isinstance(listed, list) else []
        arm.tags = sorted({*tags, PROMPT_TAG})
    result = LangfusePushResult(client.base_url)
    try:
        for arm in arms:
            status = "unchanged" if arm.found is not None else "created"
            number = arm.found if arm.found is not None else _create(client, arm, prompt_type)
            if status == "created":
                progress(f"langfuse: {arm.name} {arm.version} registered as version {number}")
            result.rows.append(
                {
                    "name": arm.name,
                    "namespace": arm.namespace,
                    "arm": arm.arm,
                    "prompt_version": arm.version,
                    "file": arm.file,
                    "status": status,
                    "langfuse_version": number,
                    "alias": langfuse_alias(arm.name, number),
                }
            )
    except RemoteError as exc:
        if not result.created:
            raise
        made = ", ".join(
            f"{r['name']} version {r['langfuse_version']}"
            for r in result.rows
            if r["status"] == "created"
        )
        raise failed_after_some(exc, result, history_dir, made) from exc
    if history_dir is not None:
        result.record(history_dir)
    return result


def _read_arms(out_dir: Path, prefix: str) -> list[_Arm]:
    manifest = load_manifest(out_dir / "manifest.json")
    arms = []
    for namespace, entry in sorted(manifest.get("namespaces", {}).items()):
        experiment = entry.get("experiment") or {}
        for arm in entry.get("arms", []):
            version = arm["prompt_version"]
            if not _LABEL.fullmatch(version):
                raise InputError(
                    f"{out_dir / 'manifest.json'}: prompt version {version!r} of {namespace} "
                    f"{arm['arm']} is not a Langfuse label (lower case, at most 36 characters); "
                    "render again with 'coach render'"
                )
            try:
                text = (out_dir / arm["file"]).read_text(encoding="utf-8")
            except OSError as exc:
                raise InputError(
                    f"{out_dir / arm['file']}: cannot read the prompt of {namespace} "
                    f"{arm['arm']} ({exc}); render again with 'coach render'"
                ) from exc
            coach = {
                "prompt_version": version,
                "namespace": namespace,
                "arm": arm["arm"],
                "experiment_id": experiment.get("id"),
                "skill_ids": list(arm.get("skill_ids", [])),
                "file": arm["file"],
            }
            name = prompt_name(prefix, namespace, arm["arm"])
            arms.append(_Arm(name, namespace, arm["arm"], version, arm["file"], text, coach))
    return arms


def _path(name: str) -> str:
    return f"{PROMPTS}/{urllib.parse.quote(name, safe='')}"


def _checked(answer: Any, client: JsonClient, name: str, request: str) -> dict[str, Any]:
    """A ``Prompt`` answer of ``name`` with an integer ``version`` and a list of ``labels``."""
    if (
        not isinstance(answer, dict)
        or answer.get("name") != name
        or isinstance(answer.get("version"), bool)
        or not isinstance(answer.get("version"), int)
        or not isinstance(answer.get("labels"), list)
    ):
        raise RemoteError(
            f"Langfuse at {client.base_url} answered {request} for the prompt {name} with no "
            f"prompt version (a 'name', an integer 'version' and 'labels' expected): "
            f"{str(answer)[:200]}"
        )
    return answer


def _by_label(client: JsonClient, name: str, label: str) -> dict[str, Any] | None:
    """The version of ``name`` labelled ``label``, or None when there is none."""
    answer = client.get(_path(name), {"label": label}, allow_404=True)
    if answer is NOT_FOUND:
        return None
    found = _checked(answer, client, name, f"GET {_path(name)}?label={label}")
    return found if label in found["labels"] else None


def _text(prompt: Mapping[str, Any]) -> str | None:
    """The text of a ``text`` prompt, or the system message of a ``chat`` prompt coach made."""
    body = prompt.get("prompt")
    if isinstance(body, str):
        return body
    if isinstance(body, list) and len(body) == 1 and isinstance(body[0], dict):
        content = body[0].get("content")
        return content if isinstance(content, str) else None
    return None


def _meta(client: JsonClient, name: str) -> dict[str, Any] | None:
    """The ``PromptMeta`` of ``name`` from the list endpoint, or None when there is no such
    prompt."""
    answer = client.get(PROMPTS, {"name": name})
    data = answer.get("data") if isinstance(answer, dict) else None
    if not isinstance(data, list) or not all(isinstance(d, dict) for d in data):
        raise RemoteError(
            f"Langfuse at {client.base_url} answered GET {PROMPTS}?name={name} without a "
            f"'data' list of prompts: {str(answer)[:200]}"
        )
    return next((d for d in data if d.get("name") == name), None)


def _create(client: JsonClient, arm: _Arm, prompt_type: str) -> int:
    """POST the new version of ``arm`` and return its Langfuse version number. A status in
    :data:`~pipeline.remote.http.RETRY_STATUSES` is retried under ``client.retry``, but only
    after looking for the label: a 5xx may come after the version was stored."""
    content: Any = arm.text
    if prompt_type == "chat":
        content = [{"role": "system", "content": arm.text}]
    body = {
        "name": arm.name,
        "type": prompt_type,
        "prompt": content,
        "labels": [arm.version],
        "tags": arm.tags,
        "config": {"coach": arm.config},
        "commitMessage": f"coach {arm.version}: the {arm.arm} prompt of {arm.namespace}",
    }
    retry = client.retry or Retry(max_retries=0)
    once = dataclasses.replace(client, retry=None)
    request = f"POST {PROMPTS}"
    for attempt in range(retry.max_retries + 1):
        try:
            answer = once.post(PROMPTS, body)
        except RemoteError as exc:
            cause = exc.__cause__
            if not isinstance(cause, urllib.error.HTTPError):  # no status: cut off, not JSON
                raise RemoteError(f"{exc}; {_MAYBE_STORED.format(label=arm.version)}") from exc
            status = cause.code
            if status not in RETRY_STATUSES or attempt >= retry.max_retries:
                raise
            found = _by_label(client, arm.name, arm.version)
            if found is not None and prompt_version(_text(found) or "") == arm.version:
                return int(found["version"])
            wait = retry.wait(cause.headers.get("Retry-After"), attempt)
            retry.retries += 1
            retry.on_retry(
                f"langfuse: {status} for {request} ({arm.name}), retry {attempt + 1} of "
                f"{retry.max_retries} in {wait:g} s"
            )
            retry.sleep(wait)
            continue
        try:
            created = _checked(answer, client, arm.name, request)
        except RemoteError as exc:
            raise RemoteError(f"{exc}; {_MAYBE_STORED.format(label=arm.version)}") from exc
        if arm.version not in created["labels"]:
            raise RemoteError(
                f"Langfuse at {client.base_url} stored version {created['version']} of "
                f"{arm.name} without the label {arm.version} (labels {created['labels']}); "
                "push again to label a new version"
            )
        return int(created["version"])
    raise AssertionError("unreachable: the last attempt returns or raises")
