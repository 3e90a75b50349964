"""Whether a reworded skill still says what its pattern says: the same tools, the same argument
and value, the same direction. An LLM may make a skill clearer; it may not make "get an explicit
yes before calling cancel_reservation" into "call cancel_reservation and skip confirmation".

:class:`Keep` is what a rewording must keep, built from the pattern by :func:`keep_for_pattern`
(or :func:`keep_for_cluster`); :func:`unfaithful` says why an instruction does not keep it.

The direction of a skill is its :class:`Stance`, fixed by the pattern's kind and direction
(harmful when the behaviour lowers the odds of success within task, see
:func:`pipeline.extract.evidence_from_row`), in the same way as the template that words it
(:data:`pipeline.extract.TEMPLATES`):

- ``CAUTION``: avoid the behaviour, or check or confirm before it (a harmful tool call, write
  argument, order, unconfirmed write, error, repeated call or transfer; a failure cluster). A
  rewording must carry a cue of caution (avoid, never, only, unless, before, confirm, check,
  verify, ask, explicit, ...) and no cue that waives it: ``skip``, ``no need to``, ``not
  necessary``, ``never ask`` / ``do not confirm``, ``without asking / confirming / checking``
  (unless the sentence is itself a prohibition: "never call X without an explicit yes"),
  ``always call X`` (unless limited by only, after, once, unless or a confirmation), ``proceed
  immediately`` and the like, ``assume consent``.
- ``ENCOURAGE``: do something (call a helpful tool, call the lookup first, use a helpful argument
  value, call a failed tool again). A rewording must not tell the agent to avoid, skip or never
  call the tool it encourages (``avoid X``, ``never call X``, ``skip X``, ``without calling X``
  outside a prohibition); for a retry, not ``do not retry`` nor ``give up``.

The cues are English: an instruction in another language is rejected for want of a caution cue
or keeps its template wording, which is the safe side.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

__all__ = ["STANCES", "Keep", "Stance", "keep_for_cluster", "keep_for_pattern", "unfaithful"]


class Stance(Enum):
    """What a skill tells the agent about its behaviour (see the module docstring)."""

    CAUTION = "caution"
    ENCOURAGE = "encourage"


# (pattern kind, direction) -> stance: the keys of pipeline.extract.TEMPLATES.
STANCES: dict[tuple[str, str], Stance] = {
    ("tool_called", "harmful"): Stance.CAUTION,
    ("tool_called", "helpful"): Stance.ENCOURAGE,
    ("tool_order", "helpful"): Stance.ENCOURAGE,
    ("tool_order", "harmful"): Stance.CAUTION,
    ("write_arg", "harmful"): Stance.CAUTION,
    ("write_arg", "helpful"): Stance.ENCOURAGE,
    ("unconfirmed_write", "harmful"): Stance.CAUTION,
    ("tool_error", "harmful"): Stance.CAUTION,
    ("unretried_error", "harmful"): Stance.ENCOURAGE,  # the skill: call it again
    ("repeated_call", "harmful"): Stance.CAUTION,
    ("transfer", "harmful"): Stance.CAUTION,
}


@dataclass(frozen=True)
class Keep:
    """What a rewording of one skill must keep.

    ``stance``: its :class:`Stance`, or None to check names only. ``tools``: tool names the
    instruction must all name. ``any_tool``: tool names it must name at least one of (a failure
    cluster's). ``terms``: argument names and values it must all name. ``target``: the tool an
    ``ENCOURAGE`` skill asks for (may not be negated). ``retry``: the skill asks to call
    ``target`` again after an error.
    """

    stance: Stance | None
    tools: tuple[str, ...] = ()
    any_tool: tuple[str, ...] = ()
    terms: tuple[str, ...] = ()
    target: str = ""
    retry: bool = False


def _plain(value: str) -> bool:
    """A value an instruction can be asked to repeat: short, one line, letters, digits and simple
    punctuation only (not a masked, redacted or free-text value)."""
    return 0 < len(value) <= 40 and re.fullmatch(r"[\w .:/+-]+", value) is not None


def keep_for_pattern(kind: str, direction: str | None, subject: str, detail: str) -> Keep:
    """The :class:`Keep` of a pattern (a row of ``Analysis.results``: ``kind``, ``subject``,
    ``detail``; ``direction`` ``harmful`` or ``helpful``). Tools: the subject's tool (the part
    before a dot), after the detail (the earlier tool) for ``tool_order``. Terms, for
    ``write_arg``: the argument name and, when it is plain, its value."""
    stance = STANCES.get((kind, direction or ""))
    tool, _, arg = subject.partition(".")
    tools = tuple(t for t in ((detail, tool) if kind == "tool_order" else (tool,)) if t)
    terms: tuple[str, ...] = ()
    if kind == "write_arg":
        terms = tuple(t for t in (arg, detail if _plain(detail) else "") if t)
    target = detail if kind == "tool_order" else tool
    return Keep(stance, tools, (), terms, target, kind == "unretried_error")


def keep_for_cluster(tools: tuple[str, ...]) -> Keep:
    """The :class:`Keep` of a failure cluster: name one of its ``tools``, with caution."""
    return Keep(Stance.CAUTION, (), tools)


def _name_pattern(name: str) -> str:
    """A regex for ``name`` as written in prose: case-insensitive parts separated by nothing,
    spaces, underscores, hyphens or dots (``book_trip``, ``book trip``, ``Book-Trip``), not
    inside a longer word."""
    parts = [re.escape(p) for p in re.split(r"[\W_]+", name.lower()) if p]
    return r"(?<![a-z0-9])" + r"[\s_.\-]*".join(parts) + r"(?![a-z0-9])" if parts else ""


def _names(text: str, name: str) -> bool:
    pattern = _name_pattern(name)
    return not pattern or re.search(pattern, text) is not None


_NEGATION = r"(?:never|not|n't|no|cannot|avoid|refrain|unless|only|prohibit\w*|forbid\w*)"
_CAUTION_CUES = re.compile(
    r"\b(?:avoid\w*|never|not|n't|no|only|unless|until|before|after|once|confirm\w*|check\w*"
    r"|re-check\w*|verify\w*|verif\w*|ask\w*|explicit\w*|make\s+sure|ensure|refrain|instead"
    r"|careful\w*|caution\w*|wait|approv\w*|consent|permission|policy|polic\w+|review\w*"
    r"|validat\w*|double-check\w*|correct\w*|fix\w*|change)\b|n't\b"
)
# Cues that waive a caution; each with whether a prohibition earlier in its sentence makes it
# part of the caution instead ("never call X without an explicit yes").
_WAIVERS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(p), exempt)
    for p, exempt in (
        (r"\bskip(?:s|ped|ping)?\b", "directly"),
        (r"\bno\s+need\b|\bneedn'?t\b|\bunnecessary\b|\bnot\s+(?:necessary|needed|required)\b", ""),
        (r"\boptional(?:ly)?\b|\bdispense\s+with\b|\bwaive\w*\b|\bforgo\w*\b", ""),
        (r"\bno\s+(?:\w+\s+){0,2}?(?:needed|required|necessary)\b", ""),
        (
            r"\b(?:never|don'?t|do\s+not|no\s+longer|stop|cease)\s+(?:\w+\s+)?"
            r"(?:ask|confirm|check|verify|wait|seek|request|double-check|re-check)\w*",
            "",
        ),
        (
            r"\bwithout\s+(?:\w+\s+){0,3}?(?:ask|confirm|check|verif|consent|approv|permission"
            r"|explicit|wait|review|yes|agreement|double-check|re-check)\w*",
            "sentence",
        ),
        (r"\balways\s+(?:\w+\s+)?(?:call|use|invoke|run|execute|proceed|go\s+ahead)\b", "limited"),
        (
            r"\b(?:proceed|go\s+ahead|act|call\s+\S+|execute|continue)\s+(?:\w+\s+)?"
            r"(?:immediately|directly|anyway|right\s+away|at\s+once|regardless|straight\s+away)\b",
            "sentence",
        ),
        (r"\bassume\s+(?:\w+\s+){0,2}?(?:yes|consent|confirm\w*|approv\w*|agree\w*)", ""),
        (r"\b(?:automatically|unconditionally|blindly)\b", ""),
    )
)
_LIMITS = re.compile(r"\b(?:only|after|once|unless|confirm\w*|explicit|check\w*|verif\w*)\b")
_RETRY_WAIVERS = re.compile(
    r"\b(?:do\s+not|don'?t|never|avoid|no\s+need\s+to|stop|refrain\s+from)\s+(?:\w+\s+){0,2}?"
    r"(?:retry\w*|re-?try\w*|try\w*\s+again|call\w*\s+(?:it\s+)?again|re-?call\w*|repeat\w*)"
    r"|\binstead\s+of\s+retry\w*"
    r"|\b(?:transfer|escalate)\w*\s+(?:\w+\s+){0,4}?(?:immediately|right\s+away|at\s+once)\b"
)
_GIVE_UP = re.compile(r"\bgive\s+up\b")


def _sentence_before(text: str, start: int) -> str:
    return re.split(r"[.;:!?]", text[:start])[-1]


def _waived(text: str) -> str:
    """The first cue in ``text`` that waives a caution, or empty."""
    for pattern, exempt in _WAIVERS:
        for match in pattern.finditer(text):
            before = _sentence_before(text, match.start())
            sentence = before + text[match.start() :].split(".")[0]
            if exempt == "directly" and re.search(rf"\b{_NEGATION}\s*$", before):
                continue  # "never skip", "do not skip"
            if exempt == "sentence" and re.search(rf"\b{_NEGATION}\b", before):
                continue  # "never call X without an explicit yes"
            if exempt == "limited" and _LIMITS.search(sentence[len(before) :]):
                continue  # "always call X only after an explicit yes"
            return match.group(0)
    return ""


def _negates(text: str, name: str) -> str:
    """A phrase of ``text`` that tells the agent not to call ``name``, or empty."""
    tool = _name_pattern(name)
    if not tool:
        return ""
    cue = (
        r"\b(?:avoid|avoiding|never|not|n't|stop|refrain\s+from|skip|skipping|without"
        r"|instead\s+of|rather\s+than|no\s+need\s+to)\s+(?:\w+\s+){0,2}?"
    )
    for match in re.finditer(cue + tool, text):
        before = _sentence_before(text, match.start())
        lead = re.findall(r"\b(?:never|not|n't|avoid\w*|stop|skip\w*|without|no)\b", match.group(0))
        if re.search(rf"\b{_NEGATION}\s*$", before) or len(lead) > 1:
            continue  # "never skip X", "do not skip X"
        if match.group(0).startswith("without") and re.search(rf"\b{_NEGATION}\b", before):
            continue  # "do not call B without calling A first"
        return match.group(0)
    return ""


def unfaithful(instruction: str, keep: Keep) -> str:
    """Why ``instruction`` does not keep ``keep`` (empty when it does): a tool, argument or value
    it must name is missing, or its direction is reversed (see the module docstring). Compare
    text already normalised (:func:`pipeline.llm.screen.normalise`)."""
    text = " ".join(instruction.lower().split())
    missing = [t for t in keep.tools if not _names(text, t)]
    if missing:
        return f"the instruction does not name the pattern's tool ({', '.join(missing)})"
    if keep.any_tool and not any(_names(text, t) for t in keep.any_tool):
        return f"the instruction does not name the pattern's tool ({', '.join(keep.any_tool)})"
    missing = [t for t in keep.terms if not _names(text, t)]
    if missing:
        return f"the instruction does not keep the pattern's argument ({', '.join(missing)})"
    if keep.stance is Stance.CAUTION:
        waiver = _waived(text)
        if waiver:
            return f"the instruction reverses the skill's caution ({waiver!r})"
        if not _CAUTION_CUES.search(text):
            return "the instruction drops the skill's caution (no avoid, check or confirm)"
    elif keep.stance is Stance.ENCOURAGE:
        negated = _negates(text, keep.target) if keep.target else ""
        if negated:
            return f"the instruction reverses the skill ({negated!r})"
        if keep.retry:
            found = [m.group(0) for m in _RETRY_WAIVERS.finditer(text)] + [
                m.group(0)
                for m in _GIVE_UP.finditer(text)
                if not re.search(rf"\b(?:{_NEGATION}|before)\s+$", text[: m.start()])
            ]
            if found:
                return f"the instruction reverses the skill ({found[0]!r})"
    return ""
