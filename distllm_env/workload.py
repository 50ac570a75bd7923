"""Requests (inference sessions) and the workload generator.

Requests are drawn once per seed from the ``workload`` stream (docs/contracts.md §1) and shared by every
policy, as the published simulator pre-generates its inter-arrival times.  Poisson arrivals start at
t = 0, as the published traces do (their first gap is 0), followed by exponential gaps of mean 1/λ.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import ScenarioError
from .instance import Instance
from .rng import generators, seed_streams
from .traces import load_trace


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

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.output_tokens


def generate_requests(instance: Instance, seed: int) -> list[Request]:
    """The seed's requests, in arrival order (ties kept in index order).

    Raises:
        ScenarioError: a trace names a client the instance does not have, or arrival times are
            not finite."""
    sc = instance.scenario
    wl = sc.workload
    arrival_rng, length_rng, client_rng = generators(seed_streams(seed)["workload"], 3)
    prompt = output = clients = None
    if wl.arrival == "trace":
        tr = load_trace(wl.trace, sc.base_dir)
        n = wl.num_requests or len(tr.arrival_s)
        arrivals = np.asarray(tr.arrival_s[:n], dtype=float)
        if tr.prompt_tokens is not None:
            prompt, output = tr.prompt_tokens[:n], tr.output_tokens[:n]
        if tr.client is not None:
            clients = tr.client[:n]
            if clients.size and clients.max() >= instance.num_clients:
                raise ScenarioError("workload.trace", f"trace names client {int(clients.max())} but the scenario "
                                                      f"has {instance.num_clients} client(s)")
    else:
        n = wl.num_requests
        gaps = arrival_rng.exponential(1.0 / wl.arrival_rate_per_s, size=n)
        gaps[0] = 0.0
        arrivals = np.cumsum(gaps)
    if not np.all(np.isfinite(arrivals)):  # guarded by the rate / trace checks at parse time
        raise ScenarioError("workload", "arrival times are not finite (rate too small or trace out of range)")
    if prompt is None:
        prompt = wl.prompt_tokens.sample(length_rng, n)
        output = wl.output_tokens.sample(length_rng, n)
    if clients is None:
        if instance.num_clients == 1:
            clients = np.zeros(n, dtype=np.int64)
        else:
            w = np.array([c.weight for c in instance.clients], dtype=float)
            clients = client_rng.choice(instance.num_clients, size=n, p=w / w.sum())
    return [Request(id=i, client=int(clients[i]), arrival_s=float(arrivals[i]), prompt_tokens=int(prompt[i]),
                    output_tokens=int(output[i])) for i in range(n)]


__all__ = ["Request", "generate_requests"]
