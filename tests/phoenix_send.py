"""Send OpenInference agent traces to a Phoenix server, as an instrumented agent would.

Run with the Python of Phoenix's own environment (``.venv/phoenix``, which has the OpenTelemetry
SDK and its OTLP/HTTP exporter), not coach's: tests/test_phoenix.py calls it as
``python tests/phoenix_send.py ENDPOINT PROJECT FIRST COUNT PROMPT_VERSION``. It sends COUNT
traces numbered from FIRST through the SDK's batch processor to ``ENDPOINT/v1/traces``, each an
AGENT span holding an LLM span that calls a tool, the TOOL span and a closing LLM span, with
the attributes of the OpenInference semantic conventions
(https://github.com/Arize-ai/openinference/blob/main/spec/semantic_conventions.md). Odd runs look
up the order before cancelling it and succeed; even runs cancel at once and fail. It prints one
line per trace: ``<trace id hex> <root span id hex> <success|failure>``.
"""

from __future__ import annotations

import json
import sys

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

SYSTEM = "You are the support agent of an airline. Follow the policy."


def _messages(prefix: str, messages: list[dict]) -> dict[str, object]:
    out: dict[str, object] = {}
    for n, m in enumerate(messages):
        out[f"{prefix}.{n}.message.role"] = m["role"]
        if m.get("content") is not None:
            out[f"{prefix}.{n}.message.content"] = m["content"]
        for k, call in enumerate(m.get("tool_calls", [])):
            key = f"{prefix}.{n}.message.tool_calls.{k}.tool_call"
            out[f"{key}.id"] = call["id"]
            out[f"{key}.function.name"] = call["name"]
            out[f"{key}.function.arguments"] = json.dumps(call["arguments"])
        if m.get("tool_call_id"):
            out[f"{prefix}.{n}.message.tool_call_id"] = m["tool_call_id"]
    return out


def main(endpoint: str, project: str, first: int, count: int, version: str) -> None:
    resource = Resource.create({"openinference.project.name": project, "service.name": "agent"})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(f"{endpoint}/v1/traces")))
    tracer = provider.get_tracer("coach-tests")
    for number in range(first, first + count):
        good = number % 2 == 1
        tool = "get_order" if good else "cancel_order"
        task = f"Please cancel my order {number}."
        call = {"id": f"call-{number}", "name": tool, "arguments": {"order_id": str(number)}}
        result = json.dumps({"order_id": str(number), "status": "pending"})
        with tracer.start_as_current_span("agent") as root:
            root.set_attributes(
                {
                    "openinference.span.kind": "AGENT",
                    "agent.name": "support",
                    "input.value": task,
                    "session.id": f"session-{number}",
                    "user.id": f"user-{number}",
                }
            )
            history = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": task}]
            with tracer.start_as_current_span("llm") as llm:
                llm.set_attributes(
                    {
                        "openinference.span.kind": "LLM",
                        "llm.model_name": "gpt-test",
                        "llm.prompt_template.version": version,
                        "llm.token_count.prompt": 40,
                        "llm.token_count.completion": 12,
                        **_messages("llm.input_messages", history),
                        **_messages(
                            "llm.output_messages",
                            [{"role": "assistant", "content": None, "tool_calls": [call]}],
                        ),
                    }
                )
            with tracer.start_as_current_span(tool) as span:
                span.set_attributes(
                    {
                        "openinference.span.kind": "TOOL",
                        "tool.name": tool,
                        "tool_call.id": call["id"],
                        "input.value": json.dumps(call["arguments"]),
                        "output.value": result,
                    }
                )
            answer = "Your order is cancelled." if good else "I could not cancel it."
            history += [
                {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "content": result, "tool_call_id": call["id"]},
            ]
            with tracer.start_as_current_span("llm") as llm:
                llm.set_attributes(
                    {
                        "openinference.span.kind": "LLM",
                        "llm.model_name": "gpt-test",
                        "llm.prompt_template.version": version,
                        **_messages("llm.input_messages", history),
                        **_messages(
                            "llm.output_messages", [{"role": "assistant", "content": answer}]
                        ),
                    }
                )
            root.set_attribute("output.value", answer)
            context = root.get_span_context()
            print(
                f"{context.trace_id:032x} {context.span_id:016x} {'success' if good else 'failure'}"
            )
    provider.force_flush()
    provider.shutdown()


if __name__ == "__main__":
    endpoint, project, first, count, version = sys.argv[1:6]
    main(endpoint, project, int(first), int(count), version)
