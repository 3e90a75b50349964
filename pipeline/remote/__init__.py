"""The tools teams already run, read and written over their REST APIs: Arize Phoenix, Langfuse
and LangSmith.

- :func:`pull_phoenix` pulls a Phoenix project's spans and annotations, incrementally, into a
  JSON Lines file that the ``openinference`` adapter ingests (:mod:`pipeline.remote.phoenix`);
- :func:`pull_langsmith` and :func:`pipeline.remote.langfuse.pull_langfuse` pull a LangSmith or
  Langfuse project's traces the same way (:mod:`pipeline.remote.langsmith`,
  :mod:`pipeline.remote.langfuse`), with what they share (retry settings, the result, the file
  written trace by trace, the cursor) in :mod:`pipeline.remote.pull`;
- :func:`push_prompts_phoenix` and :func:`push_prompts_langfuse` register each arm of
  ``prompts_out/manifest.json`` as a prompt version marked with coach's ``prompt_version`` (a
  Phoenix tag, a Langfuse label; :mod:`pipeline.remote.phoenix_prompts`,
  :mod:`pipeline.remote.langfuse_prompts`);
- :class:`JsonClient` is the small HTTP client all use (:mod:`pipeline.remote.http`): every
  failure a :class:`~pipeline.errors.RemoteError` naming the server.

Keys come from the environment only (``PHOENIX_API_KEY``, ``LANGFUSE_PUBLIC_KEY`` and
``LANGFUSE_SECRET_KEY``, ``LANGSMITH_API_KEY``), never from arguments that a shell history or
process list would show.
"""

from pipeline.remote.http import NOT_FOUND, JsonClient
from pipeline.remote.langfuse_prompts import (
    LangfusePushResult,
    langfuse_alias,
    langfuse_prompts_client,
    push_prompts_langfuse,
)
from pipeline.remote.langsmith import (
    LangSmithPullResult,
    langsmith_client,
    langsmith_endpoint,
    pull_langsmith,
)
from pipeline.remote.phoenix import (
    DEFAULT_ENDPOINT,
    PullResult,
    cursor_path,
    phoenix_client,
    phoenix_endpoint,
    pull_phoenix,
)
from pipeline.remote.phoenix_prompts import PushResult, prompt_name, push_prompts_phoenix

__all__ = [
    "DEFAULT_ENDPOINT",
    "NOT_FOUND",
    "JsonClient",
    "LangSmithPullResult",
    "LangfusePushResult",
    "PullResult",
    "PushResult",
    "cursor_path",
    "langfuse_alias",
    "langfuse_prompts_client",
    "langsmith_client",
    "langsmith_endpoint",
    "phoenix_client",
    "phoenix_endpoint",
    "prompt_name",
    "pull_langsmith",
    "pull_phoenix",
    "push_prompts_langfuse",
    "push_prompts_phoenix",
]
