"""The tools teams already run, read and written over their REST APIs: Arize Phoenix.

- :func:`pull_phoenix` pulls a Phoenix project's spans and annotations, incrementally, into a
  JSON Lines file that the ``openinference`` adapter ingests (:mod:`pipeline.remote.phoenix`);
- :func:`push_prompts_phoenix` registers each arm of ``prompts_out/manifest.json`` as a Phoenix
  prompt version tagged with coach's ``prompt_version`` (:mod:`pipeline.remote.phoenix_prompts`);
- :class:`JsonClient` is the small HTTP client both use (:mod:`pipeline.remote.http`): every
  failure a :class:`~pipeline.errors.RemoteError` naming the server.

Keys come from the environment only (``PHOENIX_API_KEY``), never from arguments that a shell
history or process list would show.
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
