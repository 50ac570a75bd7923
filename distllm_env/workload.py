"""Requests (inference sessions) and the workload generator.

Requests are drawn once per seed from the ``workload`` stream (docs/contracts.md §1) and shared by every
policy, as the published simulator pre-generates its inter-arrival times.  Poisson arrivals start at
t = 0, as the published traces do (their first gap is 0), followed by exponential gaps of mean 1/λ;
bursty ``gamma`` / ``mmpp`` arrivals: :mod:`distllm_env.arrivals`.  Over-length requests are rejected
or truncated by :func:`distllm_env.lengths.admit_lengths` (docs/scenarios.md, "Over-length requests").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .arrivals import gamma_arrivals, mmpp_arrivals, poisson_arrivals
from .errors import ScenarioError
from .limits import MAX_HORIZON_S
from .instance import Instance
from .lengths import EXCEEDS_MAX_SEQUENCE, admit_lengths
from .rng import generators, seed_streams
from .traces import load_trace, trace_window


@dataclass(frozen=True)
class Request:
    """One inference session: client, arrival time, prompt and output lengths.

    ``client_blocks`` is the number of leading blocks the client runs itself (split inference);
    the server chain then starts at that block."""

    id: int
    client: int
    arrival_s: float
    prompt_tokens: int
    output_tokens: int
    client_blocks: int = 0
    #: output length the client declares at session open (PETALS ``max_length`` − prompt when the
    #: true length is unknown); ``None`` at construction means "same as ``output_tokens``".
    declared_output_tokens: int | None = None
    #: whether the client knows its output length in advance (``workload.output_tokens_known``).
    output_tokens_known: bool = True
    #: set (e.g. ``"exceeds_max_sequence"``) when the request is recorded rejected at arrival
    #: without routing.
    rejection: str | None = None
    #: the output was cut so that prompt + output fits the model's maximum sequence.
    truncated: bool = False

    def __post_init__(self) -> None:
        if self.declared_output_tokens is None:
            object.__setattr__(self, "declared_output_tokens", int(self.output_tokens))

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.output_tokens


def generate_requests(instance: Instance, seed: int) -> list[Request]:
    """The seed's requests, in arrival order (ties kept in index order), shape: one per request.

    Arrivals: ``poisson`` / ``gamma`` / ``mmpp`` drawn from the seed's ``workload`` stream
    (:mod:`distllm_env.arrivals`), or a trace window (``trace_offset``, ``num_requests``) shifted so
    its first request arrives at 0; every arrival time is then divided by ``time_scale``.  Every
    request's lengths go through :func:`~distllm_env.lengths.admit_lengths` (the one over-length
    check): rejected requests keep ``rejection = "exceeds_max_sequence"``, truncated ones
    ``truncated = True``; ``declared_output_tokens`` is what the client declares at session open.

    Raises:
        ScenarioError: a trace names a client the instance does not have, or arrival times are
            not finite."""
    sc = instance.scenario
    wl = sc.workload
    arrival_rng, length_rng, client_rng = generators(seed_streams(seed)["workload"], 3)
    prompt = output = clients = None
    if wl.arrival == "trace":
        tr = load_trace(wl.trace, sc.base_dir)
        start, stop = trace_window(tr, wl.trace_offset_requests, wl.trace_offset_s, wl.num_requests)
        n = stop - start
        arrivals = np.asarray(tr.arrival_s[start:stop], dtype=float) - float(tr.arrival_s[start])
        if tr.prompt_tokens is not None:
            prompt, output = tr.prompt_tokens[start:stop], tr.output_tokens[start:stop]
        if tr.client is not None:
            clients = tr.client[start:stop]
            if clients.size and clients.max() >= instance.num_clients:
                raise ScenarioError("workload.trace", f"trace names client {int(clients.max())} but the scenario "
                                                      f"has {instance.num_clients} client(s)")
    elif wl.arrival == "gamma":
        n = wl.num_requests
        arrivals = gamma_arrivals(arrival_rng, wl.arrival_rate_per_s, wl.cv, n)
    elif wl.arrival == "mmpp":
        n = wl.num_requests
        arrivals = mmpp_arrivals(arrival_rng, wl.rates_per_s, wl.mean_sojourn_s, n)
    else:
        n = wl.num_requests
        arrivals = poisson_arrivals(arrival_rng, wl.arrival_rate_per_s, n)
    if wl.time_scale != 1.0:
        arrivals = arrivals / wl.time_scale
    if not np.all(np.isfinite(arrivals)) or (arrivals.size and arrivals.max() > MAX_HORIZON_S):
        # the parse-time checks bound the MEAN horizon; a draw can still land past it
        raise ScenarioError("workload", f"arrival times reach {float(np.max(arrivals)):.3g} s, beyond the "
                                        f"{MAX_HORIZON_S:g} s horizon (docs/scenarios.md, limits)")
    if prompt is None:
        prompt = wl.prompt_tokens.sample(length_rng, n)
        output = wl.output_tokens.sample(length_rng, n)
    if clients is None:
        if instance.num_clients == 1:
            clients = np.zeros(n, dtype=np.int64)
        else:
            w = np.array([c.weight for c in instance.clients], dtype=float)
            clients = client_rng.choice(instance.num_clients, size=n, p=w / w.sum())
    adm = admit_lengths(prompt, output, instance.model.max_sequence_tokens, wl.over_length, wl.output_tokens_known,
                        wl.max_length)
    known = wl.output_tokens_known
    return [Request(id=i, client=int(clients[i]), arrival_s=float(arrivals[i]), prompt_tokens=int(prompt[i]),
                    output_tokens=int(adm.output_tokens[i]), declared_output_tokens=int(adm.declared_output_tokens[i]),
                    output_tokens_known=known, rejection=EXCEEDS_MAX_SEQUENCE if adm.rejected[i] else None,
                    truncated=bool(adm.truncated[i]))
            for i in range(n)]


__all__ = ["Request", "generate_requests"]
