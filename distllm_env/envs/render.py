"""Rendering helpers: text tables and matplotlib figures (imported lazily, Agg canvas, no pyplot).

``rgb_array`` frames show the block coverage of the placement (one horizontal bar per server over
the block axis) and the per-server KV load (reserved / capacity), as docs/architecture.md asks.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

FIG_SIZE_IN = (6.4, 4.8)
FIG_DPI = 60


def bar(frac: float, width: int = 20) -> str:
    """A text bar of ``width`` characters filled to ``frac`` ∈ [0, 1]."""
    frac = 0.0 if not np.isfinite(frac) else min(max(frac, 0.0), 1.0)
    n = int(round(frac * width))
    return "#" * n + "." * (width - n)


def coverage_load_rgb(num_blocks: int, starts: Sequence[int], counts: Sequence[int], load_frac: Sequence[float],
                      title: str, highlight: Sequence[int] = (), decided: Sequence[bool] | None = None) -> np.ndarray:
    """An H×W×3 uint8 frame: top, each server's hosted block range; bottom, each server's KV load.

    ``highlight`` servers (the current decision or the candidate chain) are drawn in a second
    colour; servers with ``decided[j] == False`` (placement still open) are drawn hatched-empty."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = len(counts)
    fig = Figure(figsize=FIG_SIZE_IN, dpi=FIG_DPI)
    canvas = FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(2, 1, gridspec_kw={"height_ratios": [2, 1]})
    hl = set(int(h) for h in highlight)
    for j in range(n):
        colour = "tab:orange" if j in hl else "tab:blue"
        if decided is not None and not decided[j]:
            ax1.barh(j, num_blocks, left=0, color="none", edgecolor="lightgrey", hatch="//")
        if counts[j] > 0:
            ax1.barh(j, counts[j], left=starts[j], color=colour)
    ax1.set_xlim(0, max(num_blocks, 1))
    ax1.set_ylim(-0.5, max(n, 1) - 0.5)
    ax1.invert_yaxis()
    ax1.set_xlabel("block")
    ax1.set_ylabel("server")
    ax1.set_title(title, fontsize=9)
    ax2.bar(np.arange(n), np.clip(np.asarray(load_frac, dtype=float), 0, 1),
            color=["tab:orange" if j in hl else "tab:green" for j in range(n)])
    ax2.set_ylim(0, 1)
    ax2.set_xlim(-0.5, max(n, 1) - 0.5)
    ax2.set_xlabel("server")
    ax2.set_ylabel("KV load")
    fig.tight_layout()
    canvas.draw()
    frame = np.asarray(canvas.buffer_rgba())[..., :3].copy()
    return frame


__all__ = ["bar", "coverage_load_rgb"]
