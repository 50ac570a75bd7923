"""The top-level ``fidelity:`` field: which of four readings the simulator and the paper's policies
follow where the authors' published simulator (arXiv 2512.21884 code) and this project's contracts
differ (docs/fidelity.md, "Fidelity modes"; docs/contracts.md §3).

``fidelity: contracts`` (the default) is the project's reading; ``fidelity: authors-code`` selects
all four readings of the published code at once.  A mapping selects them one by one, starting from
``mode``'s values::

    fidelity: {mode: contracts, path_ties: first-finalised}

=======================  =======================  ===========================================
field                    ``contracts``            ``authors-code``
=======================  =======================  ===========================================
``petals_penalty``       ``free-bytes``           ``session-count``
``t1_allocation_delay``  ``true``                 ``false``
``client_node``          ``any``                  ``off-servers``
``path_ties``            ``lowest-index``         ``first-finalised``
=======================  =======================  ===========================================

* ``petals_penalty``: the default router variant of ``petals`` — ``published`` (10 s when the
  server's free bytes are short of this request's m_ij blocks) or ``published-exact`` (10 s only when
  ⌊pool / per-session cache⌋ − active sessions == 0, a session count compared with ``==``).
* ``t1_allocation_delay``: whether T₁ of CG-BP's |R| rule counts the ``proposed`` family's
  allocation delay (the published scripts add only the initial delay).
* ``client_node``: where a ``clients: {count: …}`` sampler may put a client — any node, or only the
  nodes no server occupies (the published code draws the client after the servers, from the rest).
* ``path_ties``: which of two exactly equal-cost chains the shortest-chain search keeps — the lowest
  DAG index, or the predecessor a Dijkstra with strict ``<`` relaxation finalises first (the
  published code's Dijkstra).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from .. import validation as v
from ..errors import ScenarioError

FIDELITY_MODES = ("contracts", "authors-code")
PETALS_PENALTIES = ("free-bytes", "session-count")
CLIENT_NODE_RULES = ("any", "off-servers")
PATH_TIE_RULES = ("lowest-index", "first-finalised")


@dataclass(frozen=True)
class FidelitySpec:
    """The four readings (see the module docstring); the defaults are ``contracts`` mode."""

    mode: str = "contracts"
    petals_penalty: str = "free-bytes"
    t1_allocation_delay: bool = True
    client_node: str = "any"
    path_ties: str = "lowest-index"


DEFAULT_FIDELITY = FidelitySpec()
AUTHORS_CODE = FidelitySpec(mode="authors-code", petals_penalty="session-count", t1_allocation_delay=False,
                            client_node="off-servers", path_ties="first-finalised")
_BY_MODE = {"contracts": DEFAULT_FIDELITY, "authors-code": AUTHORS_CODE}


def parse_fidelity(value: Any, path: str = "fidelity") -> FidelitySpec:
    """``None`` → contracts; a mode name; or a mapping ``{mode, petals_penalty, t1_allocation_delay,
    client_node, path_ties}`` whose fields override ``mode``'s (default ``contracts``).

    Raises:
        ScenarioError: an unknown mode, key or value (naming ``fidelity.<key>``)."""
    if value is None:
        return DEFAULT_FIDELITY
    if isinstance(value, str):
        if value not in _BY_MODE:
            raise ScenarioError(path, f"expected one of {list(FIDELITY_MODES)} or a mapping, got {v.short(value)}")
        return _BY_MODE[value]
    d = v.mapping(value, path)
    v.check_keys(d, path, ("mode", "petals_penalty", "t1_allocation_delay", "client_node", "path_ties"))
    base = _BY_MODE[v.string(d, "mode", path, default="contracts", choices=FIDELITY_MODES)]
    return replace(
        base,
        petals_penalty=v.string(d, "petals_penalty", path, default=base.petals_penalty, choices=PETALS_PENALTIES),
        t1_allocation_delay=v.boolean(d, "t1_allocation_delay", path, default=base.t1_allocation_delay),
        client_node=v.string(d, "client_node", path, default=base.client_node, choices=CLIENT_NODE_RULES),
        path_ties=v.string(d, "path_ties", path, default=base.path_ties, choices=PATH_TIE_RULES),
    )


def scenario_fidelity(scenario: Any) -> FidelitySpec:
    """The scenario's :class:`FidelitySpec` (contracts for an object without one)."""
    return getattr(scenario, "fidelity", None) or DEFAULT_FIDELITY


__all__ = ["AUTHORS_CODE", "CLIENT_NODE_RULES", "DEFAULT_FIDELITY", "FIDELITY_MODES", "FidelitySpec", "PATH_TIE_RULES",
           "PETALS_PENALTIES", "parse_fidelity", "scenario_fidelity"]
