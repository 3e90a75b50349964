"""The LLM options of ``coach learn`` (spliced into its options in :mod:`pipeline.cli`) and the
:class:`~pipeline.config.LLMConfig` they build. Every option can also come from ``coach.toml``
(:mod:`pipeline.cli.settings`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from pipeline.config import LLMConfig

__all__ = ["LLM_OPTIONS", "llm_config"]

_COUNT = click.IntRange(min=0)
_AMOUNT = click.FloatRange(min=0)

LLM_OPTIONS = [
    click.option(
        "--llm/--no-llm",
        "llm",
        default=False,
        help="Refine skill wording with an LLM through an OpenAI-compatible endpoint (off by "
        "default; skills and evidence still come from the statistics).",
    ),
    click.option(
        "--model", "llm_model", envvar="COACH_MODEL", default=None, help="Model name for --llm."
    ),
    click.option(
        "--base-url",
        "llm_base_url",
        envvar="OPENAI_BASE_URL",
        default=None,
        help="OpenAI-compatible endpoint, e.g. http://localhost:11434/v1 (Ollama) or "
        "http://localhost:8000/v1 (vLLM); default OpenAI. The key is read from OPENAI_API_KEY.",
    ),
    click.option(
        "--llm-auto",
        is_flag=True,
        help="Let LLM-worded skills become active like template-worded ones (default: proposed).",
    ),
    click.option(
        "--max-llm-calls", type=_COUNT, default=None, help="Budget: LLM requests per run."
    ),
    click.option(
        "--max-tokens",
        "llm_max_tokens",
        type=_COUNT,
        default=None,
        help="Budget: prompt + completion tokens per run.",
    ),
    click.option(
        "--max-usd", type=_AMOUNT, default=None, help="Budget: estimated cost per run (USD)."
    ),
    click.option(
        "--usd-per-1k-input",
        type=_AMOUNT,
        default=LLMConfig.usd_per_1k_input,
        show_default=True,
        help="Price of 1,000 prompt tokens (USD), for the cost estimate.",
    ),
    click.option(
        "--usd-per-1k-output",
        type=_AMOUNT,
        default=LLMConfig.usd_per_1k_output,
        show_default=True,
        help="Price of 1,000 completion tokens (USD), for the cost estimate.",
    ),
    click.option(
        "--llm-timeout",
        type=click.FloatRange(min=0, min_open=True),
        default=LLMConfig.timeout_s,
        show_default=True,
        help="Seconds per LLM request.",
    ),
    click.option(
        "--llm-retries",
        type=_COUNT,
        default=LLMConfig.max_retries,
        show_default=True,
        help="Retries after a timeout, 429 or 5xx.",
    ),
    click.option(
        "--llm-backoff",
        type=_AMOUNT,
        default=LLMConfig.backoff_s,
        show_default=True,
        help="First retry delay in seconds, doubled each retry (a Retry-After header wins).",
    ),
    click.option(
        "--llm-concurrency",
        type=click.IntRange(min=1),
        default=LLMConfig.concurrency,
        show_default=True,
        help="LLM requests in flight at once.",
    ),
    click.option(
        "--llm-structured",
        type=click.Choice(["auto", "json_schema", "json"]),
        default=LLMConfig.structured,
        show_default=True,
        help="How to ask for JSON: response_format json_schema (auto falls back to a schema in "
        "the prompt when the endpoint rejects it), or the prompt only.",
    ),
    click.option(
        "--llm-template",
        type=click.Path(path_type=Path, dir_okay=False, exists=True),
        default=None,
        help="Jinja template for the distillation prompt (default: the package's distill.md.j2).",
    ),
    click.option(
        "--llm-label",
        is_flag=True,
        help="With --llm: label trajectories without an outcome with an LLM judge (one call "
        "per trajectory, cached, within the budgets) before the analysis; the stored tables "
        "keep their labels.",
    ),
    click.option(
        "--llm-label-rubric",
        type=click.Path(path_type=Path, dir_okay=False, exists=True),
        default=None,
        help="Rubric for --llm-label: plain text added to the judge's prompt, or a Jinja "
        "template replacing the package's judge.md.j2.",
    ),
    click.option(
        "--llm-cache",
        type=click.Path(path_type=Path, dir_okay=False),
        default=None,
        help="DuckDB file of cached LLM responses (default: DATA_DIR/llm_cache.duckdb).",
    ),
]


def llm_config(kw: dict[str, Any]) -> LLMConfig:
    """The :class:`LLMConfig` of the parsed :data:`LLM_OPTIONS` in ``kw``.

    Raises:
        SettingError: an inconsistent value (see :class:`LLMConfig`); its ``setting`` names the
            field (:func:`pipeline.cli.options.option_of` gives the option).
    """
    return LLMConfig(
        enabled=kw["llm"],
        model=kw["llm_model"],
        base_url=kw["llm_base_url"],
        auto=kw["llm_auto"],
        max_calls=kw["max_llm_calls"],
        max_tokens=kw["llm_max_tokens"],
        max_usd=kw["max_usd"],
        usd_per_1k_input=kw["usd_per_1k_input"],
        usd_per_1k_output=kw["usd_per_1k_output"],
        timeout_s=kw["llm_timeout"],
        max_retries=kw["llm_retries"],
        backoff_s=kw["llm_backoff"],
        concurrency=kw["llm_concurrency"],
        structured=kw["llm_structured"],
        template_file=kw["llm_template"],
        label=kw["llm_label"],
        label_rubric=kw["llm_label_rubric"],
        cache_path=kw["llm_cache"],
    )
