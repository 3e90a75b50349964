"""What successful runs did instead, the condition, and exemplars (pipeline.analyze.instead).

Hand-made Chat JSONL traces, six tasks per namespace, four runs per task:

- two failed runs: look up (``get_y``, which returns ``{"cabin": "basic", ...}``), then
  ``update_x`` (the harmful action);
- one successful run that does something else after the look-up (namespace ``shop``: replies to
  the user; ``xfer``: transfers; ``args``: calls ``update_x`` with other arguments; ``tools``:
  calls ``check_policy``; ``quits``: ends the run), after ``verify_z`` at its start;
- one successful run that calls ``update_x`` after the look-up returned ``cabin`` ``economy``
  (namespace ``calm``: ``basic`` too, the null case for the condition).

Namespace ``confirm``: after the look-up every run asks "Shall I upgrade?"; in the two failed
runs the user hesitates and the agent calls ``update_x`` with cabin business anyway, in the two
successful ones the user says yes and the agent calls it with cabin economy.
"""

from __future__ import annotations

import json
from typing import Any

import duckdb
import polars as pl
import pytest
from scipy.stats import fisher_exact

from pipeline.analyze import AnalyzerConfig, FeatureConfig, create_feature_table, units_and_strata
from pipeline.analyze.instead import Target, alternatives
from pipeline.ingest import ingest

EMAIL = "ada.lovelace@example.com"
SECRET = "sk-proj-abcdefghijklmnopqrstuvwxyz123456"
REPLY = f"Basic fares cannot be changed. Write to {EMAIL}, api_key={SECRET}"


def _call(call_id: str, name: str, args: dict[str, Any]) -> dict[str, Any]:
    function = {"name": name, "arguments": json.dumps(args)}
    return {"role": "assistant", "content": None,
            "tool_calls": [{"id": call_id, "type": "function", "function": function}]}  # fmt: skip


def _result(call_id: str, content: Any) -> dict[str, Any]:
    text = content if isinstance(content, str) else json.dumps(content)
    return {"role": "tool", "tool_call_id": call_id, "content": text}


def _run(task: int, n: int, kind: str, cabin: str, instead: str) -> list[dict[str, Any]]:
    """The messages of one run: ``kind`` ``update`` (look up, then update_x), ``instead``
    (verify_z, look up, then ``instead``) or anything else (the look-up only)."""
    reservation = f"R{task}{n}"
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You are a booking agent."},
        {"role": "user", "content": f"Please upgrade my reservation {reservation}."},
    ]
    if kind == "instead":
        messages += [_call("v", "verify_z", {"user": f"u{task}"}), _result("v", "verified")]
    messages += [
        _call("g", "get_y", {"reservation_id": reservation}),
        _result("g", {"reservation_id": reservation, "cabin": cabin, "seat": "AB"[task % 2],
                      "flights": [{"to": "JFK"}]}),
    ]  # fmt: skip
    if kind == "update":
        args = {"reservation_id": "R", "cabin": "business"}
        messages += [_call("u", "update_x", args), _result("u", "done")]
        messages.append({"role": "assistant", "content": "Your reservation is upgraded."})
    elif instead == "reply":
        messages.append({"role": "assistant", "content": REPLY})
        messages.append({"role": "user", "content": "I see, thanks."})
    elif instead == "transfer":
        messages += [_call("t", "transfer_to_human_agents", {"summary": "upgrade"}),
                     _result("t", "transferred")]  # fmt: skip
    elif instead == "other_args":
        messages += [_call("u", "update_x", {"reservation_id": "R", "cabin": "economy"}),
                     _result("u", "done")]  # fmt: skip
    elif instead == "other_tool":
        messages += [_call("p", "check_policy", {"topic": "basic"}), _result("p", "no")]
    return messages


Store = tuple[duckdb.DuckDBPyConnection, pl.DataFrame]
NAMESPACES = {"shop": "reply", "xfer": "transfer", "args": "other_args",
              "tools": "other_tool", "quits": "end", "calm": "reply"}  # fmt: skip


def _records() -> list[dict[str, Any]]:
    records = []
    for domain, instead in NAMESPACES.items():
        for task in range(6):
            plan = [("update", "basic", False), ("update", "basic", False),
                    ("instead", "basic", True),
                    ("update", "basic" if domain == "calm" else "economy", True)]  # fmt: skip
            for n, (kind, cabin, success) in enumerate(plan):
                records.append(
                    {
                        "id": f"{domain}-t{task}-r{n}",
                        "messages": _run(task, n, kind, cabin, instead),
                        "outcome": "success" if success else "failure",
                        "metadata": {"task_id": f"{domain}{task}", "domain": domain},
                    }
                )
    for task in range(6):
        for n, success in enumerate((False, False, True, True)):
            messages = _run(task, n, "none", "basic", "")
            answer = "Yes, please." if success else "Hmm, what does it cost?"
            cabin = "economy" if success else "business"
            messages += [
                {"role": "assistant", "content": "Shall I upgrade?"},
                {"role": "user", "content": answer},
                _call("u", "update_x", {"reservation_id": "R", "cabin": cabin}),
                _result("u", "done"),
            ]
            records.append(
                {
                    "id": f"confirm-t{task}-r{n}",
                    "messages": messages,
                    "outcome": "success" if success else "failure",
                    "metadata": {"task_id": f"confirm{task}", "domain": "confirm"},
                }
            )
    return records


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    path = tmp_path_factory.mktemp("instead") / "runs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in _records()), encoding="utf-8")
    traces = ingest([path])
    con = traces.connect()
    create_feature_table(con, FeatureConfig())
    units, _ = units_and_strata(traces, AnalyzerConfig())
    return con, units


def _answer(store: Store, *targets: Target, **options: Any) -> dict[str, dict[str, Any]]:
    con, units = store
    return alternatives(con, units, targets, FeatureConfig(), **options)


def _harmful(domain: str, feature: str = "tool_called:update_x") -> Target:
    return Target(f"{domain}:{feature}", f"domain:{domain}", feature, "harmful")


def test_successful_runs_replied_instead(store: Store) -> None:
    answer = _answer(store, _harmful("shop"))["shop:tool_called:update_x"]
    assert answer["instead"] == {
        "action": "reply",
        "tool": None,
        "share": 1.0,
        "pairs": 12,  # 12 failed runs, each with the one successful run of its task without it
        "summary": "replied to the user without a tool call",
    }


@pytest.mark.parametrize(
    ("domain", "action", "tool", "summary"),
    [
        ("xfer", "transfer", "transfer_to_human_agents", "transferred to a human agent"),
        ("args", "other_args", "update_x", "called update_x with other arguments"),
        ("tools", "other_tool", "check_policy", "called check_policy"),
        ("quits", "end", None, "ended the run"),
    ],
)
def test_each_kind_of_alternative(
    store: Store, domain: str, action: str, tool: str | None, summary: str
) -> None:
    target = _harmful(domain)
    if domain == "args":  # the successful run calls update_x too: contrast the argument
        target = _harmful(domain, "write_arg:update_x.cabin=business")
    instead = _answer(store, target)[target.key]["instead"]
    assert (instead["action"], instead["tool"], instead["summary"]) == (action, tool, summary)
    assert instead["share"] == 1.0


def test_aligned_after_as_many_user_messages(store: Store) -> None:
    # failed runs called update_x one user message after the look-up: so did the successful
    # ones, with other arguments (not the question both asked right after the look-up)
    target = _harmful("confirm", "write_arg:update_x.cabin=business")
    instead = _answer(store, target)[target.key]["instead"]
    # 12 failed runs x the 2 successful runs of their task
    assert (instead["action"], instead["tool"], instead["pairs"]) == ("other_args", "update_x", 24)
    assert instead["share"] == 1.0


def test_the_same_action_after_other_steps(store: Store) -> None:
    # successful runs called update_x too, after a yes: the same action, whatever its arguments
    # (the feature is not about them); the exemplar quotes the user message before the call.
    # No successful run shows the feature: no condition.
    entry = _answer(store, _harmful("confirm", "unconfirmed_write:update_x"))[
        "confirm:unconfirmed_write:update_x"
    ]
    assert "condition" not in entry
    assert entry["instead"]["action"] == "same_action" and entry["instead"]["share"] == 1.0
    assert entry["instead"]["summary"] == "called update_x too, after different steps before it"
    exemplar = entry["exemplars"][0]
    assert exemplar["text"].startswith('user: "') and '" -> update_x(' in exemplar["text"]


def test_the_condition_names_the_distinguishing_result(store: Store) -> None:
    condition = _answer(store, _harmful("shop"))["shop:tool_called:update_x"]["condition"]
    # 12 failed runs saw cabin=basic, none of the 6 successful runs that updated did
    expected_p = fisher_exact([[12, 0], [0, 6]]).pvalue
    assert condition == {
        "text": "get_y returned cabin=basic",
        "source": "result",
        "tool": "get_y",
        "key": "cabin",
        "value": "basic",
        "rate_failed": 1.0,
        "rate_succeeded": 0.0,
        "p_value": round(expected_p, 6),
    }
    assert condition["p_value"] == pytest.approx(5.4e-05, abs=1e-6)


def test_a_condition_on_the_action_s_own_argument(store: Store) -> None:
    # namespace args: every run calls update_x; failed runs always with cabin business, the
    # successful ones half the time (the other half with economy). The look-up's cabin=basic
    # splits them as well (12/12 against 6/12): an exact tie, broken by source, then key.
    condition = _answer(store, _harmful("args"))["args:tool_called:update_x"]["condition"]
    assert condition["text"] == "cabin=business"
    assert (condition["source"], condition["tool"]) == ("argument", "update_x")
    assert (condition["rate_failed"], condition["rate_succeeded"]) == (1.0, 0.5)
    assert condition["p_value"] == round(fisher_exact([[12, 0], [6, 6]]).pvalue, 6)


def test_no_condition_when_the_result_does_not_differ(store: Store) -> None:
    answer = _answer(store, _harmful("calm"))["calm:tool_called:update_x"]
    assert "condition" not in answer  # cabin=basic everywhere, seat independent of outcome
    assert answer["instead"]["action"] == "reply"


def test_exemplars_point_at_real_steps(store: Store) -> None:
    con, _ = store
    exemplars = _answer(store, _harmful("shop"))["shop:tool_called:update_x"]["exemplars"]
    assert len(exemplars) == 2
    assert [e["role"] for e in exemplars] == ["instead", "instead"]
    assert [e["trajectory_id"] for e in exemplars] == ["shop-t0-r2", "shop-t1-r2"]
    for exemplar in exemplars:
        ((step_type, content),) = con.execute(
            "select step_type, content_text from steps where trajectory_id = ? and step_idx = ?",
            [exemplar["trajectory_id"], exemplar["step_idx"]],
        ).fetchall()
        assert step_type == "assistant"
        assert content == REPLY
        assert exemplar["text"].startswith("Basic fares cannot be changed. Write to <email>")
        assert len(exemplar["text"]) <= 200


def test_exemplar_text_is_redacted(store: Store) -> None:
    exemplars = _answer(store, _harmful("shop"), max_exemplars=1)
    (exemplar,) = exemplars["shop:tool_called:update_x"]["exemplars"]
    assert EMAIL not in exemplar["text"] and SECRET not in exemplar["text"]
    assert "<email>" in exemplar["text"] and "<secret>" in exemplar["text"]


def test_a_tool_call_exemplar_reads_tool_and_arguments(store: Store) -> None:
    con, _ = store
    (exemplar, _) = _answer(store, _harmful("tools"))["tools:tool_called:update_x"]["exemplars"]
    ((tool, args),) = con.execute(
        "select tool_name, tool_args from steps where trajectory_id = ? and step_idx = ?",
        [exemplar["trajectory_id"], exemplar["step_idx"]],
    ).fetchall()
    assert exemplar["text"] == f"{tool}({args})" == 'check_policy({"topic":"basic"})'


def test_helpful_feature_shows_successful_runs_and_what_failed_runs_did(store: Store) -> None:
    target = Target("verify", "domain:shop", "tool_called:verify_z", "helpful")
    answer = _answer(store, target)["verify"]
    # failed runs, after the first user message, looked the reservation up instead
    assert answer["instead"]["action"] == "other_tool"
    assert answer["instead"]["summary"] == "called get_y"
    assert answer["instead"]["pairs"] == 12  # 6 successful runs x the 2 failed runs of their task
    assert [e["role"] for e in answer["exemplars"]] == ["shown", "shown"]
    assert answer["exemplars"][0]["text"] == 'verify_z({"user":"u0"})'
    assert "condition" not in answer


def test_nothing_to_say_without_counterparts(store: Store) -> None:
    # every run calls get_y: no run of the other outcome lacks it, and nothing distinguishes
    # the runs where it went wrong; nor does a feature nobody shows
    assert _answer(store, _harmful("shop", "tool_called:get_y")) == {}
    assert _answer(store, _harmful("shop", "tool_called:nothing")) == {}
    assert _answer(store, _harmful("nowhere")) == {}


def test_deterministic_and_json_ready(store: Store) -> None:
    targets = [_harmful(d) for d in NAMESPACES] + [
        Target("verify", "domain:shop", "tool_called:verify_z", "helpful")
    ]
    first = _answer(store, *targets)
    second = _answer(store, *reversed(targets))
    assert first == second
    assert list(first) == [t.key for t in targets]
    assert json.loads(json.dumps(first)) == first


def test_capped_runs(store: Store) -> None:
    answer = _answer(store, _harmful("shop"), max_runs=3)["shop:tool_called:update_x"]
    assert answer["instead"]["pairs"] == 3
    assert "condition" not in answer  # 3 failed and 3 successful runs: p is not below 0.05


def test_bad_direction() -> None:
    with pytest.raises(ValueError, match="harmful or helpful"):
        Target("k", "global", "tool_called:x", "neutral")
