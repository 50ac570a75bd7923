"""Markdown tables of the catalog and the topology generators, for docs/scenarios.md.

:func:`render_catalog_tables` builds, from the code's own tables (:func:`distllm_env.catalog.default_catalog`,
:func:`distllm_env.topology.world_cities`, the shipped Repetita files), the lists a scenario writer needs:
GPU keys, model keys, the τ of every (model, GPU) pair, client devices, regions and cities, node naming
and the shipped topologies.  :func:`update_markdown` writes them between the marker comments
``<!-- BEGIN GENERATED: catalog -->`` / ``<!-- END GENERATED: catalog -->``; ``tests/test_docs_catalog.py``
fails when the file and the code disagree.  Regenerate with::

    python -m distllm_env.catalog_docs docs/scenarios.md
"""

from __future__ import annotations

import sys
from pathlib import Path

from .catalog import GB, default_catalog
from .topology import REPETITA_TOPOLOGIES, cluster_node_name, known_regions, load_repetita, world_cities

BEGIN = "<!-- BEGIN GENERATED: catalog (python -m distllm_env.catalog_docs docs/scenarios.md) -->"
END = "<!-- END GENERATED: catalog -->"


def _g(x: float, digits: int = 4) -> str:
    return f"{x:.{digits}g}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def render_catalog_tables() -> str:
    """The generated Markdown (no markers), deterministic: same code → same text."""
    cat = default_catalog()
    out: list[str] = []

    out.append("### GPU keys (`servers.*.gpu`, `servers.gpu_mix`, `gpus:`)\n")
    out.append(_table(
        ["key", "memory (GB, 10⁹ B)", "memory bandwidth (GB/s)", "dense BF16 TFLOPS", "max blocks"],
        [[f"`{g.name}`", _g(g.memory_bytes / GB), _g(g.memory_bandwidth_bytes_per_s / 1e9),
          _g(g.dense_bf16_flops / 1e12), str(g.max_blocks) if g.max_blocks else "—"] for g in cat.gpus.values()]))

    out.append("\n### Model keys (`model:`, `split.requests.*.model`)\n")
    out.append(_table(
        ["key", "blocks L", "d_model", "heads / KV heads", "params per block", "block weights (GB, NF4)",
         "max sequence tokens"],
        [[f"`{m.name}`", str(m.num_blocks), str(m.d_model), f"{m.num_heads} / {m.num_kv_heads}",
          f"{m.params_per_block:,}", _g(m.block_bytes / GB), f"{m.max_sequence_tokens:,}"]
         for m in cat.models.values()]))

    out.append("\n### Per-token time τ of one block (ms) for every (model, GPU) pair\n")
    out.append("Measured pairs are **bold**; every other pair is derived from the measured BLOOM-176B × "
               "A100-80GB pair (docs/model.md, calibration).\n")
    rows = []
    for m in cat.models.values():
        row = [f"`{m.name}`"]
        for g in cat.gpus.values():
            cal = cat.calibration(m.name, g.name)
            cell = _g(cal.tau_decode_s * 1e3)
            row.append(cell if cal.derived else f"**{cell}**")
        rows.append(row)
    out.append(_table(["model \\ GPU", *[f"`{g}`" for g in cat.gpus]], rows))

    out.append("\n### Client devices (`clients.*.device`, `devices:`)\n")
    out.append(_table(
        ["key", "peak TFLOPS", "efficiency", "memory (GB, 10⁹ B)", "memory bandwidth (GB/s)", "uplink / downlink (Mbit/s)"],
        [[f"`{d.name}`", _g(d.peak_flops / 1e12), _g(d.efficiency), _g(d.memory_bytes / GB),
          _g(d.memory_bandwidth_bytes_per_s / 1e9) if d.memory_bandwidth_bytes_per_s else "—",
          f"{_g(d.uplink_bits_per_s / 1e6)} / {_g(d.downlink_bits_per_s / 1e6)}"] for d in cat.devices.values()]))

    out.append("\n### Regions and cities (`topology.geo.regions`, `topology.geo.cities`)\n")
    cities = world_cities()
    out.append(_table(
        ["region", "cities"],
        [[f"`{r}`", ", ".join(f"`{c.name}`" for c in cities if c.region == r)] for r in known_regions()]))

    out.append("\n### Node names (`servers.*.node`, `clients.*.node`, `servers.nodes`)\n")
    out.append("A node is given by its name or by its 0-based index.\n")
    example_geo = [f"`n{i}_{name}`" for i, name in enumerate(c.name for c in cities[:3])]
    out.append(_table(
        ["topology", "node names", "example"],
        [["`geo`", "`n{i}_{City}`: i = position in `cities` (or draw order), City as in the table above",
          ", ".join(example_geo)],
         ["`clusters`", "`c{k}n{i}`: member i of cluster k, both 0-based",
          ", ".join(f"`{cluster_node_name(k, i)}`" for k, i in ((0, 0), (1, 0), (2, 3)))],
         ["`repetita`", "`{i}_{Label}` from the `.graph` file", "see below"]]))

    out.append("\n### Shipped topologies (`topology.repetita`)\n")
    rows = []
    for name in REPETITA_TOPOLOGIES:
        topo = load_repetita(name)
        rows.append([f"`{name}`", str(topo.num_nodes), str(len(topo.edge_src) // 2),
                     ", ".join(f"`{n}`" for n in topo.nodes[:3]) + ", …"])
    out.append(_table(["name", "nodes", "links", "first node names"], rows))
    return "\n".join(out) + "\n"


def update_markdown(text: str) -> str:
    """``text`` with the part between the markers replaced by :func:`render_catalog_tables`.

    Raises ``ValueError`` when the markers are missing or out of order.
    """
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"markers {BEGIN!r} … {END!r} not found in order")
    return text[: start + len(BEGIN)] + "\n\n" + render_catalog_tables() + "\n" + text[end:]


def main(argv: list[str] | None = None) -> int:
    """``python -m distllm_env.catalog_docs FILE.md``: rewrite the generated part of FILE.md in place."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m distllm_env.catalog_docs FILE.md", file=sys.stderr)
        return 2
    path = Path(args[0])
    path.write_text(update_markdown(path.read_text()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
