"""The one Jinja environment of people-facing outputs (pipeline.render.environment)."""

from __future__ import annotations

from pathlib import Path

import pytest
from jinja2 import UndefinedError
from jinja2.sandbox import SecurityError

from pipeline.render import PromptGenerator
from pipeline.render.environment import (
    Verbatim,
    code_span,
    environment,
    fence,
    markdown_inline,
    num,
    pct,
    prompt_text,
    pval,
)


def test_environment_is_sandboxed_and_strict() -> None:
    env = environment()
    with pytest.raises(UndefinedError):
        env.from_string("{{ missing }}").render()
    with pytest.raises(SecurityError):
        env.from_string("{{ x.__class__.__mro__ }}").render(x=1)


def test_only_html_templates_are_autoescaped() -> None:
    env = environment()
    assert env.from_string("{{ x }}").render(x="<b>") == "<b>"
    assert env.autoescape("report.html.j2") is True  # type: ignore[operator]
    assert env.autoescape("skillbook.md.j2") is False  # type: ignore[operator]


def test_package_templates_load() -> None:
    env = environment()
    for name in (
        "system_prompt.md.j2",
        "skillbook.md.j2",
        "agents.md.j2",
        "diff.md.j2",
        "diff_details.md.j2",
        "report.html.j2",
    ):
        env.get_template(name)


def test_filters() -> None:
    # an _ inside a word never starts emphasis (GFM 6.2), so it stays readable
    assert markdown_inline("a_b\n`c` | d _e_") == r"a_b \`c\` \| d \_e\_"
    assert markdown_inline("<img onerror=x> [a](b) # mail bob@example.com") == (
        r"\<img onerror=x\> \[a\](b) \# mail \<email\>"
    )
    assert code_span("a`b") == "``a`b``" and code_span("`x") == "`` `x ``"
    assert fence("a ```` b") == "`````" and fence("plain") == "```"
    assert prompt_text("{{ 7*7 }} mail bob@example.com") == r"\{\{ 7\*7 \}\} mail \<email\>"
    assert pct(0.456) == "46%" and pct(None) == "n/a"
    assert num(1.234) == "1.23" and num(0.0001) == "1.0e-04" and num(float("inf")) == "n/a"
    assert num(3) == "3" and pval(0) == "<1e-06" and pval(0.01234) == "0.0123"


def test_a_user_template_directory_overrides_the_prompt(tmp_path: Path) -> None:
    (tmp_path / "system_prompt.md.j2").write_text("custom {{ namespace }}\n", encoding="utf-8")
    generator = PromptGenerator(tmp_path)
    assert generator.template_source == "custom {{ namespace }}\n"
    assert generator.template.render(namespace="global", base_prompt="", sections=[]) == (
        "custom global\n"
    )
    assert PromptGenerator().template_source != generator.template_source


def test_every_printed_value_is_redacted_unless_marked() -> None:
    env = environment()
    template = env.from_string("{{ a }} | {{ b }} | {{ c }} | {{ d }} | {{ e | safe }} | {{ f }}")
    text = template.render(
        a="mail jane.doe@example.com",
        b=["+1 415 555 0123"],
        c=4111111111111111,
        d=Verbatim("support@ourteam.example"),
        e="<b>jane@example.com</b>",
        f=12,
    )
    assert text == "mail <email> | ['<phone>'] | <card> | support@ourteam.example | " + (
        "<b>jane@example.com</b> | 12"
    )
    # autoescaped templates redact first, then escape
    page = env.from_string("{% autoescape true %}{{ a }}{% endautoescape %}").render(
        a="<script>x</script> jane@example.com"
    )
    assert page == "&lt;script&gt;x&lt;/script&gt; &lt;email&gt;"
