"""Input limits: every count and size a data file can ask for has a documented maximum here.

The maxima keep a malformed or hostile scenario from asking for unbounded memory or time (a
``num_requests`` of 10^9, a 10^6-node geographic topology, an integer with 20 digits).  Values are
chosen well above every shipped preset and every published experiment (arXiv 2512.21884 uses at
most 149 nodes and 100 requests per run; the speed benchmarks use 1,000 servers and 100,000
requests).  docs/scenarios.md ("Trust boundary and limits") lists them; a test keeps that table in
sync with this module.

This module imports nothing from distllm_env, so every loader and parser may use it.
"""

from __future__ import annotations

# --- data files ---------------------------------------------------------------------------------
#: Largest YAML data file (scenario, agent YAML) or ``--set`` value read, in bytes.
MAX_YAML_BYTES = 4 * 1024 * 1024
#: Deepest nesting of mappings / lists in a YAML data file.
MAX_YAML_DEPTH = 64
#: Largest trace file (CSV or published gaps), in bytes.
MAX_TRACE_BYTES = 64 * 1024 * 1024
#: Longest repr of a user value echoed into an error message, in characters.
MAX_ECHO_CHARS = 60

# --- topology, servers, clients -----------------------------------------------------------------
#: Nodes in one topology (clustered sizes summed, geo ``num_nodes`` / ``cities``, ``.graph`` NODES).
#: Clustered topologies are fully meshed (n² links), so this also bounds their memory (~100 MB).
MAX_TOPOLOGY_NODES = 2_000
#: Links in a ``.graph`` file.
MAX_GRAPH_EDGES = 1_000_000
#: Servers in one scenario (listed, or drawn by a sampler's ``count``).
MAX_SERVERS = 2_000
#: Clients in one scenario (listed, or drawn by a sampler's ``count``).
MAX_CLIENTS = 2_000

# --- workload -----------------------------------------------------------------------------------
#: Requests per run (``workload.num_requests``, ``split.num_requests``, rows of a trace): twice the
#: 100,000 of the speed benchmark, so that a run stays within minutes and memory within ~100 MB.
MAX_REQUESTS = 200_000
#: Smallest Poisson arrival rate λ (req/s): below it arrival times lose meaning in float64.
MIN_ARRIVAL_RATE_PER_S = 1e-9
#: Largest Poisson arrival rate λ (req/s).
MAX_ARRIVAL_RATE_PER_S = 1e6
#: Largest coefficient of variation ``workload.cv`` of Gamma arrivals (the Azure code trace 2023
#: measures 13.15; docs/scenarios.md).
MAX_CV = 100.0
#: Latest arrival time (s) a workload may produce, after ``time_scale``: about 32 years.  Beyond it
#: float64 time loses sub-microsecond resolution (ulp(10^9) ≈ 1.2·10⁻⁷ s), and at 10^15 s a whole
#: 0.1 s token would vanish in rounding, so results would be silently wrong.
MAX_HORIZON_S = 1e9
#: Largest ``workload.time_scale`` (arrival-rate multiplier).
MAX_TIME_SCALE = 1e6
#: Longest prompt or output length (tokens), and the largest ``max_sequence_tokens``.
MAX_TOKENS = 10_000_000
#: Values in a ``dist: choice`` length distribution, and request types in ``split.requests``.
MAX_CHOICES = 10_000

# --- model and hardware -------------------------------------------------------------------------
#: Transformer blocks of a model (``models.*.num_blocks``).
MAX_NUM_BLOCKS = 10_000
#: Hidden size (``models.*.d_model``).
MAX_D_MODEL = 1_000_000
#: Attention heads (``models.*.num_heads`` / ``num_kv_heads``).
MAX_HEADS = 100_000
#: Parameters per block (``models.*.params_per_block``).
MAX_PARAMS_PER_BLOCK = 10**12
#: Largest memory of a GPU, server or device (``memory_gb``), in GB (10^9 bytes).
MAX_MEMORY_GB = 1e6
#: Largest ``max_blocks`` of a GPU.
MAX_BLOCKS_PER_GPU = MAX_NUM_BLOCKS
#: Largest duration of any delay or overhead (``allocation_delay_s``, ``*_ms`` fields), in seconds.
MAX_DURATION_S = 1e7
#: Largest integer policy option (``policy_defaults.options.<name>.<option>``, e.g. CG-BP's ``sessions``).
MAX_OPTION_INT = 10**9
#: Largest ``split.budget_steps``.
MAX_BUDGET_STEPS = 1_000_000

#: Every limit above, by name (for the docs table and its test).
ALL_LIMITS = {name: value for name, value in dict(globals()).items() if name.startswith(("MAX_", "MIN_"))}

__all__ = sorted(ALL_LIMITS) + ["ALL_LIMITS"]
