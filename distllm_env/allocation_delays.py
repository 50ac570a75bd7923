"""Allocation-delay rules for fair comparisons (docs/contracts.md §4): ``auto | scenario | zero |
equal:SECONDS`` or a ``{family: seconds}`` mapping, parsed once here for ``compare``, ``evaluate``,
``assert_beats``, ``LearnedRouter`` and ``LearnedPlacement`` (CLI flag ``--allocation-delays``)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

from .errors import ScenarioError
from .registry import family_delay_s, family_of

if TYPE_CHECKING:
    from .scenario import Scenario

#: the accepted forms of ``--allocation-delays`` / ``allocation_delays=`` (docs/contracts.md §4–§5)
ALLOCATION_DELAY_FORMS = "auto, scenario, zero or equal:SECONDS (a finite number of seconds >= 0)"


@dataclass(frozen=True)
class AllocationDelayRule:
    """A parsed allocation-delay rule (docs/contracts.md §4): ``mode`` is ``auto`` (the scenario's
    per-family delays unless a user's or learned policy takes part, then 0 for all), ``scenario`` (always
    the scenario's per-family delays), ``zero`` (none), ``equal`` (``seconds`` s charged to every policy,
    learned ones included) or ``given`` (an explicit ``{family: seconds}`` mapping, ``given``)."""

    mode: str
    seconds: float = 0.0
    given: tuple = ()

    @property
    def spec(self) -> str:
        """The rule as the flag spells it (``equal:60``; ``given`` for a mapping)."""
        return f"equal:{self.seconds:g}" if self.mode == "equal" else self.mode

    def resolve(self, scenario: Scenario, user: bool = False) -> tuple[dict, str]:
        """``({family: delay_s}, rule text)`` for ``scenario``; ``user``: a user's or learned policy takes
        part (matters for ``auto`` only).  Every family absent from the mapping is charged its
        ``default`` entry, else 0 (:func:`~distllm_env.registry.family_delay_s`)."""
        own = dict(scenario.simulator.allocation_delay_s)
        if self.mode == "auto":
            if user:
                return {}, "equal (0): a user or learned policy takes part"
            return own, "the scenario's per-family delays" if own else "the scenario sets none"
        if self.mode == "scenario":
            return own, ("scenario: the scenario's per-family delays (a user's or learned policy is family default)" if own
                         else "scenario: the scenario sets none")
        if self.mode == "zero":
            return {}, "none for any policy"
        if self.mode == "equal":
            return {"default": self.seconds}, f"equal: {self.seconds:g} s for every policy, learned ones included"
        given = dict(self.given)
        return given, "given by the caller" if given else "none, as the caller asked"

    def delay_for(self, scenario: Scenario, family: str = "default", user: bool = True) -> float:
        """The delay (s) charged per request to ``family`` under this rule on ``scenario``."""
        return family_delay_s(self.resolve(scenario, user)[0], family)


def parse_allocation_delays(value: Any, flag: str = "--allocation-delays") -> AllocationDelayRule:
    """Parse an allocation-delay rule: None (``auto``), ``"auto"``, ``"scenario"``, ``"zero"``,
    ``"equal:SECONDS"``, an :class:`AllocationDelayRule`, or a ``{family: seconds}`` mapping (``given``).
    The one parser behind ``compare``, ``evaluate``, ``assert_beats``, ``LearnedRouter`` and
    ``LearnedPlacement`` (docs/contracts.md §4).

    Raises:
        ScenarioError: (path ``flag``) any other value, a non-finite or negative number of seconds."""
    if value is None:
        return AllocationDelayRule("auto")
    if isinstance(value, AllocationDelayRule):
        return value
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            x = _delay_seconds(v)
            if not isinstance(k, str) or x is None:
                raise ScenarioError(flag, f"expected {{family: seconds >= 0}}, got {{{k!r}: {v!r}}}")
            out[k] = x
        return AllocationDelayRule("given", given=tuple(sorted(out.items())))
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("auto", "scenario", "zero"):
            return AllocationDelayRule(text)
        if text.startswith("equal:"):
            x = _delay_seconds(text[len("equal:"):].strip())
            if x is not None:
                return AllocationDelayRule("equal", x)
    raise ScenarioError(flag, f"expected {ALLOCATION_DELAY_FORMS}, got {value!r}")


def registered_name(policy: Any, kind: str) -> str | None:
    """The registered name ``policy`` stands for: a string as given; an instance of exactly the class
    registered under a name (a baseline configured by constructor keywords, e.g. ``CGBPPlacement(sessions=3)``)
    that name; anything else — a subclass of a baseline, a user's or learned policy — None.  ``kind``:
    ``placement`` or ``routing`` (the registry table searched)."""
    from . import registry      # looked up now: policies registered after import count too

    if isinstance(policy, str):
        return policy
    if policy is None or isinstance(policy, type):
        return None
    cls = type(policy)
    path = f"{cls.__module__}:{cls.__qualname__}"
    table = registry.PLACEMENT_POLICIES if kind == "placement" else registry.ROUTING_POLICIES
    for name, target in table.items():
        if (target == path or target is cls) and getattr(policy, "name", None) == name:
            return name
    return None


def policy_family(placement: Any, routing: Any) -> str:
    """The allocation-delay family of a placement + routing (docs/contracts.md §4): the family of the
    compare preset that the two registered names form (``family_of`` of :func:`registered_name`); a
    policy object other than an instance of exactly a registered class (a subclass of a baseline
    included), an import path or any other pair -> ``default``.  The one rule behind ``simulate``,
    ``compare`` and ``assert_beats``."""
    p, r = registered_name(placement, "placement"), registered_name(routing, "routing")
    return family_of(p, r) if p is not None and r is not None else "default"


def unequal_delays_note(families: Mapping[str, str], per_policy_s: Mapping[str, float], mode: str) -> str | None:
    """A one-line warning when, under rule ``mode`` ``auto`` or ``scenario`` (else None), a policy of
    family ``default`` (a user's, learned or non-preset ``PLACEMENT+ROUTER`` one) is charged another delay
    than a preset's family: the margin between them then includes the fitted per-family constants
    (docs/contracts.md §4).  ``families``: ``{label: family}``; ``per_policy_s``: ``{label: delay_s}``.
    Presets of different families (PETALS 250 s vs proposed 60 s, as published) raise no note."""
    if mode not in ("auto", "scenario"):
        return None
    own = {per_policy_s[k] for k, f in families.items() if f == "default"}
    preset = {per_policy_s[k] for k, f in families.items() if f != "default"}
    if not own or not preset or own == preset:
        return None
    parts = ", ".join(f"{k} {v:g} s" for k, v in per_policy_s.items())
    return (f"allocation delays differ ({parts}): a family-default policy (a user's, learned or non-preset "
            "PLACEMENT+ROUTER one) is charged another delay than the paper presets, so the comparison is not like "
            "for like; use --allocation-delays zero or equal:SECONDS for that")


def _delay_seconds(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) and x >= 0 else None


__all__ = ["ALLOCATION_DELAY_FORMS", "AllocationDelayRule", "parse_allocation_delays", "policy_family", "registered_name",
           "unequal_delays_note"]
