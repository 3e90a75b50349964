"""coach push-prompts langfuse, and Langfuse-linked traces read back as coach's prompt_version.

A Langfuse server needs Postgres, ClickHouse, Redis and object storage, too much for a test, so
these tests run against a small ``http.server`` on loopback that serves RECORDED REAL RESPONSE
SHAPES (tests/fixtures/langfuse_prompts_api/, sources in its README.md) and keeps prompts as
Langfuse's ``createPrompt`` does: each ``POST /api/public/v2/prompts`` adds the next version,
with the labels sent plus ``latest`` (taken off earlier versions: a label names one version),
the tags sent set on every version (the latest version's when none are sent), and one type per
prompt; ``GET /api/public/v2/prompts/{name}?label=`` and ``GET /api/public/v2/prompts?name=``
read them back; wrong basic auth is a 401.

The prompts pushed are real ones: ``coach learn`` starts an experiment for a proposed skill and
renders its control and candidate arms. What is checked: a push creates one version per arm,
labelled with its ``pv-...`` and holding its text and coach's config, a second creates none;
tags a team set are kept; the aliases ``langfuse:<name>:<version>`` land in the version history;
a Langfuse trace whose generation is linked to the pushed candidate version is ingested and
resolved to the candidate's prompt_version (and, without the alias, is not); the failures: 401,
429 then success (after Retry-After), a 500 after the version was stored (not registered
twice), a server that is down, malformed answers (nothing written before; named and recoverable
after), a prompt of the other type, missing keys.
"""

from __future__ import annotations

import json
import re
import shutil
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from loopback import LANGFUSE_KEYS, JsonHandler, basic_auth, closed_url, serve, use_langfuse

from pipeline.cli import main
from pipeline.errors import ConfigError, RemoteError
from pipeline.experiment import VersionHistory, load_manifest, match_exposures
from pipeline.ingest import ingest
from pipeline.loop import exposures
from pipeline.remote import (
    langfuse_alias,
    langfuse_prompts_client,
    prompt_name,
    push_prompts_langfuse,
)
from pipeline.remote.http import Retry

API = Path(__file__).resolve().parent / "fixtures" / "langfuse_prompts_api"
TRACES = Path(__file__).resolve().parent / "fixtures" / "langfuse_api"
PUBLIC, SECRET = LANGFUSE_KEYS
PROMPTS = "/api/public/v2/prompts"
SKILL = "sk-000000000001"
INSTRUCTION = "Before calling book_trip, read the booking back to the user and get a yes."
T0 = 1_790_000_000


def _fixture(name: str) -> Any:
    return json.loads((API / name).read_text())


class _Langfuse(JsonHandler):
    """Answers like Langfuse's prompt management API, in the recorded response shapes."""

    store: dict[str, list[dict[str, Any]]] = {}  # prompt name -> its versions, oldest first
    requests: list[tuple[str, str, Any]] = []  # (method, path with query, body)
    invalid: list[str] = []  # what a POST sent that Langfuse's schemas refuse
    mode = "ok"
    failures = 0  # how many requests answer with ``mode``'s failure before the rest succeed
    garble_post = 0  # the n-th POST (from 1) is stored, then answered with a body that is no JSON
    typed_meta = True  # PromptMeta with ``type`` (newer servers); older ones have none

    def _refused(self) -> bool:
        if self.mode == "401" or self.headers.get("Authorization") != basic_auth(PUBLIC, SECRET):
            self.send_json(401, _fixture("error-401.json"))
            return True
        failing = self.mode == "429" or (self.mode == "post-429" and self.command == "POST")
        if failing and type(self).failures > 0:
            type(self).failures -= 1
            self.send_json(429, _fixture("error-429.json"), {"Retry-After": "1"})
            return True
        return False

    def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
        type(self).requests.append(("GET", self.path, None))
        if self._refused():
            return
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        if self.mode == "malformed-get":
            self.send_json(200, {"data": [], "meta": {}})
        elif url.path == PROMPTS:
            self._list(query.get("name"))
        elif url.path.startswith(f"{PROMPTS}/"):
            self._one(urllib.parse.unquote(url.path[len(PROMPTS) + 1 :]), query)
        else:
            self.send_json(404, {"message": "Not found", "error": "LangfuseNotFoundError"})

    def _list(self, name: str | None) -> None:
        template = _fixture("prompts-meta.json")
        data = []
        for prompt, versions in sorted(self.store.items()):
            if name is not None and prompt != name:
                continue
            entry = dict(template["data"][0])
            entry |= {
                "name": prompt,
                "type": versions[-1]["type"],
                "versions": [v["version"] for v in versions],
                "labels": sorted({label for v in versions for label in v["labels"]}),
                "tags": versions[-1]["tags"],
                "lastUpdatedAt": versions[-1]["updatedAt"],
                "lastConfig": versions[-1]["config"],
            }
            if not self.typed_meta:
                del entry["type"]
            data.append(entry)
        meta = template["meta"] | {"totalItems": len(data), "totalPages": 1 if data else 0}
        self.send_json(200, {"data": data, "meta": meta})

    def _one(self, name: str, query: dict[str, str]) -> None:
        label = query.get("label")
        version = query.get("version")
        if version is not None:
            found = [v for v in self.store.get(name, []) if v["version"] == int(version)]
            which = f"with version {version}"
        else:
            label = label or "production"
            found = [v for v in self.store.get(name, []) if label in v["labels"]]
            which = f"with label '{label}'"
        if not found:
            body = _fixture("error-404.json")
            self.send_json(404, body | {"message": f"Prompt not found: '{name}' {which}"})
            return
        self.send_json(200, found[0])

    def do_POST(self) -> None:  # noqa: N802 (the name http.server calls)
        body = self.read_json()
        type(self).requests.append(("POST", self.path, body))
        if self._refused():
            return
        kind = body.get("type", "text")
        self._validate(body, kind)
        versions = self.store.setdefault(body["name"], [])
        if versions and versions[-1]["type"] != kind:
            self.send_json(400, _fixture("error-400-type.json"))
            return
        labels = list(dict.fromkeys([*body.get("labels", []), "latest"]))
        for earlier in versions:
            earlier["labels"] = [lb for lb in earlier["labels"] if lb not in labels]
        tags = body.get("tags")
        tags = list(
            dict.fromkeys(versions[-1]["tags"] if tags is None and versions else tags or [])
        )
        for earlier in versions:
            earlier["tags"] = tags
        row = _fixture(f"prompt-{kind}.json") | {
            "id": str(uuid.uuid4()),
            "name": body["name"],
            "version": len(versions) + 1,
            "type": kind,
            "prompt": body["prompt"],
            "config": body.get("config") or {},
            "labels": labels,
            "tags": tags,
            "commitMessage": body.get("commitMessage"),
        }
        versions.append(row)
        posts = sum(method == "POST" for method, _p, _b in self.requests)
        if self.mode == "stored-then-500" and type(self).failures > 0:
            type(self).failures -= 1
            self.send_json(500, {"message": "Internal Server Error", "error": "audit log failed"})
        elif posts == self.garble_post:
            self.send_json(201, b"<html><body>502 Bad Gateway</body></html>")
        else:
            self.send_json(201, {k: v for k, v in row.items() if k != "resolutionGraph"})

    def _validate(self, body: dict[str, Any], kind: str) -> None:
        """What ``CreateTextPromptSchema`` / ``CreateChatPromptSchema`` would refuse."""
        problems = self.invalid  # the class attribute the fixture checks
        if not isinstance(body.get("name"), str) or not body["name"] or "|" in body["name"]:
            problems.append(f"name {body.get('name')!r}")
        if kind == "text" and not isinstance(body.get("prompt"), str):
            problems.append("a text prompt that is not a string")
        if kind == "chat" and not all(
            isinstance(m, dict) and set(m) == {"role", "content"} for m in body.get("prompt", [])
        ):
            problems.append("chat messages that are not {role, content}")
        for label in body.get("labels", []):
            if not re.fullmatch(r"[a-z0-9_\-.]{1,36}", label):
                problems.append(f"label {label!r}")
        if not all(isinstance(t, str) for t in body.get("tags") or []):
            problems.append("tags that are not strings")
        if len(body.get("commitMessage") or "") > 500:
            problems.append("a commit message over 500 characters")


@pytest.fixture
def langfuse(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, type[_Langfuse]]]:
    with serve(_Langfuse, store={}, requests=[], invalid=[]) as (url, handler):
        use_langfuse(monkeypatch, url)
        yield url, handler
    assert not handler.invalid, handler.invalid


@pytest.fixture(scope="module")
def learned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``coach learn`` on one run with a proposed skill in the Skillbook: an experiment starts
    and control and candidate arms are rendered (``out/``, history in ``sb/``)."""
    work = tmp_path_factory.mktemp("learned")
    (work / "sb").mkdir()
    skill = {
        "id": SKILL,
        "status": "proposed",
        "section": "escalation",
        "namespace": "domain:travel",
        "instruction": INSTRUCTION,
        "evidence": {"direction": "harmful", "odds_ratio": 0.5, "ci_low": 0.2, "ci_high": 1.1},
        "source": {"method": "rule", "pattern_id": "unconfirmed_write:book_trip"},
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
    }
    book = {"format_version": 3, "version": 1, "history": [], "skills": [skill]}
    (work / "sb" / "skillbook.json").write_text(json.dumps(book))
    run = {
        "id": "run-0",
        "outcome": "success",
        "metadata": {"task_id": "t-0", "domain": "travel", "user_id": "u0", "agent": "a"},
        "messages": [
            {"role": "system", "content": "You help travellers book trips."},
            {"role": "user", "content": "Book me a trip to Lisbon."},
            {"role": "assistant", "content": "Done."},
        ],
    }
    (work / "traces").mkdir()
    (work / "traces" / "night0.jsonl").write_text(json.dumps(run) + "\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SOURCE_DATE_EPOCH", str(T0))
        patch.delenv("COACH_CONFIG", raising=False)
        result = CliRunner().invoke(
            main,
            ["learn", str(work / "traces"), "--data-dir", str(work / "data"), "--skillbook"]
            + [str(work / "sb"), "--out", str(work / "out"), "--json", "-q"],
        )
    assert result.exit_code == 0, result.output
    return work


@pytest.fixture
def work(learned: Path, tmp_path: Path) -> Path:
    """A copy of the learned prompts and Skillbook that a test may change."""
    for part in ("out", "sb"):
        shutil.copytree(learned / part, tmp_path / part)
    return tmp_path


def _arms(work: Path) -> list[dict[str, Any]]:
    manifest = load_manifest(work / "out" / "manifest.json")
    return [a | {"namespace": ns} for ns, e in manifest["namespaces"].items() for a in e["arms"]]


def _push(work: Path, *extra: str) -> tuple[int, str, dict[str, Any] | None]:
    result = CliRunner().invoke(
        main,
        ["push-prompts", "langfuse", "--out", str(work / "out"), "--skillbook"]
        + [str(work / "sb"), "--json", "-q", *extra],
    )
    payload = json.loads(result.stdout) if result.exit_code == 0 else None
    return result.exit_code, result.output, payload


def _posts(handler: type[_Langfuse]) -> list[dict[str, Any]]:
    return [body for method, _path, body in handler.requests if method == "POST"]


def test_push_creates_a_version_per_arm_and_again_none(
    langfuse: tuple[str, type[_Langfuse]], work: Path
) -> None:
    url, handler = langfuse
    arms = _arms(work)
    assert [a["arm"] for a in arms] == ["control", "candidate"]
    code, output, first = _push(work)
    assert code == 0, output
    assert first is not None
    assert (first["target"], first["host"], first["created"], first["unchanged"]) == (
        "langfuse",
        url,
        2,
        0,
    )
    assert first["aliases_added"] == 2 and first["unrecorded"] == []
    for arm in arms:
        name = prompt_name("coach", arm["namespace"], arm["arm"])
        (stored,) = handler.store[name]
        assert stored["version"] == 1
        assert stored["labels"] == [arm["prompt_version"], "latest"]
        assert stored["type"] == "text"
        assert stored["prompt"] == (work / "out" / arm["file"]).read_text(encoding="utf-8")
        assert stored["tags"] == ["coach"]
        coach = stored["config"]["coach"]
        assert coach["prompt_version"] == arm["prompt_version"]
        assert (coach["namespace"], coach["arm"]) == ("domain:travel", arm["arm"])
        assert coach["skill_ids"] == arm["skill_ids"] and coach["experiment_id"].startswith("ex-")
        assert arm["prompt_version"] in stored["commitMessage"]
    candidate = prompt_name("coach", "domain:travel", "candidate")
    assert INSTRUCTION in handler.store[candidate][0]["prompt"]
    assert (
        INSTRUCTION
        not in handler.store[prompt_name("coach", "domain:travel", "control")][0]["prompt"]
    )
    known = VersionHistory.load(work / "sb").by_version()
    for row in first["prompts"]:
        assert row["alias"] == f"langfuse:{row['name']}:1"
        assert {e["prompt_version"] for e in known[row["alias"]]} == {row["prompt_version"]}

    history = (work / "sb" / "prompt_versions.jsonl").read_text()
    posts = len(_posts(handler))
    code, output, again = _push(work)
    assert code == 0, output
    assert again is not None
    assert (again["created"], again["unchanged"], again["aliases_added"]) == (0, 2, 0)
    assert len(_posts(handler)) == posts  # nothing sent
    assert all(len(v) == 1 for v in handler.store.values())
    assert (work / "sb" / "prompt_versions.jsonl").read_text() == history


def test_a_changed_prompt_adds_a_version_and_keeps_the_teams_tags(
    langfuse: tuple[str, type[_Langfuse]], work: Path
) -> None:
    _url, handler = langfuse
    control = prompt_name("coach", "domain:travel", "control")
    old = _fixture("prompt-text.json") | {"name": control, "tags": ["team-a"]}
    handler.store[control] = [old]  # a version made by hand, labelled production
    code, output, pushed = _push(work)
    assert code == 0, output
    assert pushed is not None and pushed["created"] == 2
    first, second = handler.store[control]
    assert first["labels"] == ["production"]  # 'latest' moved to the new version
    (control_arm,) = [a for a in _arms(work) if a["arm"] == "control"]
    assert second["labels"] == [control_arm["prompt_version"], "latest"]
    assert first["tags"] == second["tags"] == ["coach", "team-a"]
    row = next(r for r in pushed["prompts"] if r["arm"] == "control")
    assert (row["langfuse_version"], row["alias"]) == (2, f"langfuse:{control}:2")

    # a pv label moved by hand to a version with other text is put back on the right text
    handler.store[control][0]["labels"].append(control_arm["prompt_version"])
    handler.store[control][1]["labels"].remove(control_arm["prompt_version"])
    code, output, again = _push(work)
    assert code == 0, output
    assert again is not None and again["created"] == 1
    assert control_arm["prompt_version"] in handler.store[control][2]["labels"]
    assert control_arm["prompt_version"] not in handler.store[control][0]["labels"]


def test_a_chat_push_sends_one_system_message(
    langfuse: tuple[str, type[_Langfuse]], work: Path
) -> None:
    _url, handler = langfuse
    code, output, pushed = _push(work, "--type", "chat")
    assert code == 0, output
    assert pushed is not None and pushed["created"] == 2
    for arm in _arms(work):
        (stored,) = handler.store[prompt_name("coach", arm["namespace"], arm["arm"])]
        text = (work / "out" / arm["file"]).read_text(encoding="utf-8")
        assert (stored["type"], stored["prompt"]) == ("chat", [{"role": "system", "content": text}])
    assert _push(work, "--type", "chat")[2]["created"] == 0  # type: ignore[index]


def _linked_trace(path: Path, name: str, version: int) -> Path:
    """The recorded OpenAI Agents SDK trace, its first generation linked to ``name`` version
    ``version`` as the Langfuse SDK links it (``promptName``, ``promptVersion``, ``promptId``)."""
    detail = json.loads((TRACES / "trace-fee618f96dc31e0ca38b2f7b26eb8b29.json").read_text())
    observations = detail.pop("observations")
    generation = next(o for o in observations if o["type"] == "GENERATION")
    generation |= {"promptName": name, "promptVersion": version, "promptId": str(uuid.uuid4())}
    assert "prompt_version" not in (detail.get("metadata") or {})
    path.write_text(json.dumps({"trace": detail, "observations": observations}) + "\n")
    return path


def test_a_trace_linked_to_the_pushed_version_comes_back_as_its_prompt_version(
    langfuse: tuple[str, type[_Langfuse]], work: Path
) -> None:
    _url, _handler = langfuse
    (candidate,) = [a for a in _arms(work) if a["arm"] == "candidate"]
    name = prompt_name("coach", "domain:travel", "candidate")
    unlinked = VersionHistory.load(work / "sb")  # before the push: no alias yet
    code, output, pushed = _push(work)
    assert code == 0, output
    assert pushed is not None

    traces = ingest([_linked_trace(work / "linked.jsonl", name, 1)])
    (report,) = traces.files
    assert (report.format, report.ingested, report.quarantined) == ("langfuse", 1, 0)
    (run,) = traces.trajectories.to_pylist()
    assert run["prompt_version"] == langfuse_alias(name, 1) == f"langfuse:{name}:1"

    history = VersionHistory.load(work / "sb")
    rows = [{**run, "count": 1}]
    (exposure,), matched = match_exposures(rows, history)
    assert (exposure.prompt_version, exposure.method) == (candidate["prompt_version"], "recorded")
    assert matched.methods["recorded"] == 1 and matched.recorded_unknown == 0
    resolved, _ = exposures(traces.trajectories, history)  # what coach learn counts
    assert [r["prompt_version"] for r in resolved] == [candidate["prompt_version"]]

    (before,), missed = match_exposures(rows, unlinked)
    assert before.prompt_version is None and missed.recorded_unknown == 1


def test_a_refused_key_names_the_variables(
    langfuse: tuple[str, type[_Langfuse]], work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, handler = langfuse
    monkeypatch.setenv("LANGFUSE_SECRET_KEY", "sk-lf-wrong")
    history = (work / "sb" / "prompt_versions.jsonl").read_text()
    code, output, _ = _push(work)
    assert code == 1
    assert f"Langfuse at {url} refused the keys (401" in output
    assert "LANGFUSE_PUBLIC_KEY" in output and "LANGFUSE_SECRET_KEY" in output
    assert "Invalid credentials" in output  # the server's own message
    assert "sk-lf-wrong" not in output and "Traceback" not in output
    assert _posts(handler) == [] and handler.store == {}
    assert (work / "sb" / "prompt_versions.jsonl").read_text() == history


def test_missing_keys_are_named(
    langfuse: tuple[str, type[_Langfuse]], work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LANGFUSE_PUBLIC_KEY")
    code, output, _ = _push(work)
    assert code == 1
    assert "LANGFUSE_PUBLIC_KEY is not set" in output and "environment only" in output
    with pytest.raises(ConfigError, match="LANGFUSE_SECRET_KEY"):
        langfuse_prompts_client("http://127.0.0.1:1", {"LANGFUSE_PUBLIC_KEY": PUBLIC})


@pytest.mark.parametrize("mode", ["429", "post-429"])
def test_429_is_retried_after_retry_after(
    langfuse: tuple[str, type[_Langfuse]], work: Path, mode: str
) -> None:
    url, handler = langfuse
    handler.mode, handler.failures = mode, 2
    waits: list[float] = []
    client = langfuse_prompts_client(url, retry=Retry(sleep=waits.append))
    result = push_prompts_langfuse(client, work / "out", history_dir=work / "sb")
    assert result.created == 2
    assert waits == [1.0, 1.0]  # the server's Retry-After, not the backoff
    assert client.retry is not None and client.retry.retries == 2
    assert all(len(v) == 1 for v in handler.store.values())  # no version twice


def test_a_500_after_the_version_was_stored_does_not_register_it_twice(
    langfuse: tuple[str, type[_Langfuse]], work: Path
) -> None:
    url, handler = langfuse
    handler.mode, handler.failures = "stored-then-500", 1
    waits: list[float] = []
    client = langfuse_prompts_client(url, retry=Retry(sleep=waits.append))
    result = push_prompts_langfuse(client, work / "out", history_dir=work / "sb")
    assert result.created == 2 and [r["langfuse_version"] for r in result.rows] == [1, 1]
    assert len(_posts(handler)) == 2  # the stored one was found by its label, not posted again
    assert all(len(v) == 1 for v in handler.store.values())
    assert waits == []


def test_a_lasting_429_gives_up_naming_what_was_registered(
    langfuse: tuple[str, type[_Langfuse]], work: Path
) -> None:
    url, handler = langfuse
    client = langfuse_prompts_client(url, retry=Retry(max_retries=2, sleep=lambda _s: None))
    # the first arm (control) goes through, then the server rate-limits every POST
    first = prompt_name("coach", "domain:travel", "control")
    original = _Langfuse.do_POST

    def limited(self: _Langfuse) -> None:
        if self.store.get(first):
            type(self).mode, type(self).failures = "post-429", 100
        original(self)

    handler.do_POST = limited  # type: ignore[method-assign]
    with pytest.raises(RemoteError) as caught:
        push_prompts_langfuse(client, work / "out", history_dir=work / "sb")
    message = str(caught.value)
    assert "answered 429" in message
    assert f"1 version(s) were registered ({first} version 1), their aliases recorded" in message
    assert "push again to register the rest" in message
    known = VersionHistory.load(work / "sb").by_version()
    assert f"langfuse:{first}:1" in known  # recorded before giving up
    handler.mode, handler.failures = "ok", 0
    handler.do_POST = original  # type: ignore[method-assign]
    result = push_prompts_langfuse(client, work / "out", history_dir=work / "sb")
    assert {r["arm"]: r["status"] for r in result.rows} == {
        "control": "unchanged",
        "candidate": "created",
    }


def test_a_malformed_answer_to_post_is_named_and_the_next_push_finds_the_version(
    langfuse: tuple[str, type[_Langfuse]], work: Path
) -> None:
    url, handler = langfuse
    handler.garble_post = 2  # the second arm is stored, but its answer is not JSON
    code, output, _ = _push(work)
    assert code == 1
    assert f"Langfuse at {url} sent an answer to POST {PROMPTS} that is not JSON" in output
    assert "may have been stored: push again" in output
    assert "1 version(s) were registered" in output and "Traceback" not in output
    handler.garble_post = 0
    code, output, again = _push(work)
    assert code == 0, output
    assert again is not None and (again["created"], again["unchanged"]) == (0, 2)
    assert again["aliases_added"] == 1  # the garbled one's alias, recorded now
    assert all(len(v) == 1 for v in handler.store.values())


def test_a_malformed_answer_to_a_read_stops_before_anything_is_written(
    langfuse: tuple[str, type[_Langfuse]], work: Path
) -> None:
    url, handler = langfuse
    handler.mode = "malformed-get"
    code, output, _ = _push(work)
    assert code == 1
    assert f"Langfuse at {url} answered GET {PROMPTS}/coach-domain-travel-" in output
    assert "no prompt version" in output
    assert _posts(handler) == []


def test_a_prompt_of_the_other_type_is_refused(
    langfuse: tuple[str, type[_Langfuse]], work: Path
) -> None:
    _url, handler = langfuse
    control = prompt_name("coach", "domain:travel", "control")
    handler.store[control] = [_fixture("prompt-chat.json") | {"name": control}]
    code, output, _ = _push(work)
    assert code == 1
    assert f"the Langfuse prompt {control}" in output and "--type chat" in output
    assert _posts(handler) == []  # checked before anything is written
    # an older server lists no type: its own 400 is reported
    handler.typed_meta = False
    code, output, _ = _push(work)
    assert code == 1
    assert "answered 400" in output and "Previous versions have different prompt type" in output


def test_server_down_is_a_clear_domain_error(work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = closed_url()
    use_langfuse(monkeypatch, url)
    history = (work / "sb" / "prompt_versions.jsonl").read_text()
    code, output, _ = _push(work)
    assert code == 1
    assert f"cannot reach Langfuse at {url}" in output
    assert "LANGFUSE_HOST" in output and "Traceback" not in output
    assert (work / "sb" / "prompt_versions.jsonl").read_text() == history


def test_without_the_history_the_versions_are_pushed_and_the_gap_said(
    langfuse: tuple[str, type[_Langfuse]], work: Path, tmp_path: Path
) -> None:
    code, output, pushed = _push(work, "--skillbook", str(tmp_path / "elsewhere"))
    assert code == 0, output
    assert pushed is not None and pushed["created"] == 2
    assert pushed["history"] is None and len(pushed["unrecorded"]) == 2
    assert not (tmp_path / "elsewhere").exists()
    text = CliRunner().invoke(
        main,
        ["push-prompts", "langfuse", "--out", str(work / "out"), "--skillbook"]
        + [str(tmp_path / "elsewhere"), "-q"],
    )
    assert text.exit_code == 0, text.output
    assert "no alias recorded for 2 arm(s)" in text.output
