"""A picture of the dynamics of one run (issue 11 item 7; ``simulate --plot F.png``,
:meth:`distllm_env.api.SimulationResult.plot`).

Every series is reconstructed from the per-request table alone (docs/contracts.md §6), so the picture
is the same under the analytic and the live engine (docs/simulator.md "The live engine") and can be
redrawn from a written table:

* **KV bytes on server j** at time t: Σ over completed requests with a hop on j and
  ``start_s ≤ t < completion_s`` of ``blocks on j × reserved_bytes_per_block``
  (:func:`distllm_env.metrics.memory_profile`, the same rule as the summary's
  ``memory_utilisation``); utilisation = that / j's KV capacity;
* **active sessions on server j**: the number of such requests (a session holds its span on every hop
  from admission to completion, docs/model.md §11);
* **waiting requests** (admission queue length): requests with ``arrival_s ≤ t < start_s``;
* **arrivals** and **rejections** per time bin; the per-token time ``(completion_s − arrival_s) /
  output_tokens`` of every completed request at its arrival time.

Series are step functions (:class:`StepSeries`): level k holds on ``[times[k], times[k+1])``, 0 before
``times[0]``.  At equal times releases come before starts (a request ending exactly when another starts
is not counted twice).

Churn: :func:`timeline_figure` takes ``marks``, a list of ``(time_s, server, event)`` tuples
(``event`` ``"fail"``, ``"leave"``, ``"join"`` or another short label; ``server`` −1 for a swarm-wide
event); :meth:`~distllm_env.api.SimulationResult.plot` passes the run's own server events
(``SimulationResult.server_events``, the churn engine's ``server_log``) by default.  In heat maps each
down period (fail/leave → join) is a hatched cyan span on the server's row and each event a marker
on that row.  In line mode (≤ :data:`MAX_LINE_SERVERS` servers) each event is a marker on its own
server's line, and a sixth panel has one row per server with its down periods as shaded spans in the
server's colour; the lines differ in dash pattern and width (:func:`line_style`) so that equal series
stay visible.  With at most :data:`MAX_LABELLED_MARKS` marks, each also gets a labelled dotted line on
every panel.  Under churn a
record holds the session's final route, so after a failover the per-server series attribute the whole
session to its replacement hops (an approximation; the swarm-wide series are exact).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .metrics import memory_profile
from .records import RequestRecord

#: above this many servers the per-server panels are heat maps instead of one line per server
MAX_LINE_SERVERS = 12
#: time bins of the heat maps and the arrival histogram
NUM_BINS = 240


@dataclass(frozen=True)
class StepSeries:
    """A right-continuous step function: ``levels[k]`` holds on ``[times[k], times[k+1])``; 0 before
    ``times[0]``.  ``times`` (n,) in s, non-decreasing; ``levels`` (n,)."""

    times: np.ndarray
    levels: np.ndarray

    def at(self, t: float | np.ndarray) -> np.ndarray:
        """The level at time(s) ``t`` (s)."""
        idx = np.searchsorted(self.times, np.asarray(t, dtype=float), side="right") - 1
        lv = np.concatenate([[0], self.levels])
        return lv[idx + 1]

    def bin_means(self, edges: np.ndarray) -> np.ndarray:
        """Exact time-average of the level over each bin ``[edges[i], edges[i+1])``; shape (len(edges) − 1,)."""
        edges = np.asarray(edges, dtype=float)
        if len(self.times) == 0:
            return np.zeros(len(edges) - 1)
        # cumulative area A(t) at the breakpoints; A is piecewise linear between them
        lv = np.asarray(self.levels, dtype=float)
        area = np.concatenate([[0.0], np.cumsum(lv[:-1] * np.diff(self.times))])
        k = np.searchsorted(self.times, edges, side="right") - 1
        inside = k >= 0
        a = np.zeros(len(edges))
        kk = np.clip(k, 0, None)
        a[inside] = area[kk[inside]] + lv[kk[inside]] * (edges[inside] - self.times[kk[inside]])
        width = np.diff(edges)
        return np.divide(np.diff(a), width, out=np.zeros(len(width)), where=width > 0)


def interval_count(starts: Sequence[float], ends: Sequence[float]) -> StepSeries:
    """How many of the intervals ``[starts[i], ends[i])`` contain t, as a :class:`StepSeries` (releases
    before starts at equal times; empty intervals are skipped)."""
    s, e = np.asarray(starts, dtype=float), np.asarray(ends, dtype=float)
    keep = e > s
    s, e = s[keep], e[keep]
    t = np.concatenate([s, e])
    d = np.concatenate([np.ones(len(s), dtype=np.int64), -np.ones(len(e), dtype=np.int64)])
    order = np.lexsort((d, t))
    t, d = t[order], np.cumsum(d[order])
    # collapse equal times to their last level
    last = np.r_[t[1:] != t[:-1], True] if len(t) else np.zeros(0, dtype=bool)
    return StepSeries(t[last], d[last])


@dataclass(frozen=True)
class Timeline:
    """The series of one run, reconstructed from its per-request records.

    ``kv_bytes[j]`` / ``sessions[j]``: per server (num_servers entries); ``kv_capacity_bytes`` (num_servers,);
    ``waiting``: admission queue length; ``running``: sessions admitted and not completed (swarm-wide);
    ``arrivals_s`` / ``rejected_s``: arrival times (s) of every /
    every rejected request; ``token_arrival_s`` / ``per_token_s``: arrival time and per-token time (s) of
    every completed request; ``t0_s`` / ``t1_s``: first arrival, last completion (or last arrival)."""

    kv_bytes: list[StepSeries]
    kv_capacity_bytes: np.ndarray
    sessions: list[StepSeries]
    waiting: StepSeries
    running: StepSeries
    arrivals_s: np.ndarray
    rejected_s: np.ndarray
    token_arrival_s: np.ndarray
    per_token_s: np.ndarray
    t0_s: float
    t1_s: float

    @property
    def num_servers(self) -> int:
        return len(self.sessions)

    def kv_utilisation(self, j: int) -> StepSeries:
        """Server j's reserved KV bytes / its KV capacity (0 for a server with none)."""
        cap = float(self.kv_capacity_bytes[j])
        s = self.kv_bytes[j]
        return StepSeries(s.times, s.levels / cap if cap > 0 else np.zeros(len(s.levels)))


def build_timeline(records: Sequence[RequestRecord], kv_capacity_bytes: Sequence[int]) -> Timeline:
    """Reconstruct a :class:`Timeline` from per-request records (any engine).  ``kv_capacity_bytes``:
    (num_servers,) KV capacity per server in bytes (``Simulation.capacity_bytes``)."""
    cap = np.asarray(kv_capacity_bytes, dtype=np.int64)
    n = len(cap)
    times, levels = memory_profile(records, n)
    kv = [StepSeries(np.asarray(t, dtype=float), np.asarray(lv)) for t, lv in zip(times, levels)]
    done = [r for r in records if r.completed and r.route is not None]
    by_srv: list[list[tuple[float, float]]] = [[] for _ in range(n)]
    for r in done:
        for j in set(r.route.servers):
            by_srv[j].append((r.start_s, r.completion_s))
    sessions = [interval_count([a for a, _ in iv], [b for _, b in iv]) for iv in by_srv]
    waiting = interval_count([r.arrival_s for r in done], [r.start_s for r in done])
    running = interval_count([r.start_s for r in done], [r.completion_s for r in done])
    arrivals = np.asarray([r.arrival_s for r in records], dtype=float)
    rejected = np.asarray([r.arrival_s for r in records if not r.completed], dtype=float)
    tok_arr = np.asarray([r.arrival_s for r in done], dtype=float)
    per_tok = np.asarray([(r.completion_s - r.arrival_s) / max(r.output_tokens, 1) for r in done], dtype=float)
    t0 = float(arrivals.min()) if len(arrivals) else 0.0
    ends = [r.completion_s for r in done] + list(arrivals)
    t1 = float(max(ends)) if ends else 1.0
    if t1 <= t0:
        t1 = t0 + 1.0
    return Timeline(kv, cap, sessions, waiting, running, arrivals, rejected, tok_arr, per_tok, t0, t1)


def result_capacity_bytes(result: Any) -> np.ndarray:
    """KV capacity per server (bytes, (num_servers,)) of a :class:`~distllm_env.api.SimulationResult`,
    by the rule the simulators use (``CachePolicy.kv_capacity_bytes``)."""
    inst, pres = result.instance, result.placement_result
    return np.asarray(pres.cache_policy.kv_capacity_bytes(inst.memory_bytes, inst.block_bytes,
                                                          pres.placement.count_array,
                                                          inst.kv_bytes_per_token_per_block), dtype=np.int64)


def _time_unit(span_s: float) -> tuple[float, str]:
    if span_s > 3 * 3600:
        return 3600.0, "h"
    if span_s > 600:
        return 60.0, "min"
    return 1.0, "s"


def _step_xy(s: StepSeries, t0: float, t1: float, scale: float) -> tuple[np.ndarray, np.ndarray]:
    x = np.concatenate([[t0], s.times, [t1]]) / scale
    y = np.concatenate([[0], s.levels, [s.levels[-1] if len(s.levels) else 0]])
    return x, y


def timeline_figure(tl: Timeline, title: str, marks: Sequence[tuple[float, int, str]] = (), *,
                    server_labels: Sequence[str] | None = None, max_line_servers: int = MAX_LINE_SERVERS,
                    num_bins: int = NUM_BINS):
    """A matplotlib :class:`~matplotlib.figure.Figure` (Agg canvas, no pyplot) with five panels over a
    shared time axis: arrivals (and rejections) per bin; waiting requests and running sessions; per-token
    time of each completed request at its arrival; KV utilisation per server (%); active sessions per
    server.  Per-server panels are lines for ≤ ``max_line_servers`` servers, else heat maps of the exact
    bin averages (``num_bins`` bins).  ``marks``: optional churn marks ``(time_s, server, event)`` (module
    docstring)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = tl.num_servers
    heat = n > max_line_servers
    t0, t1 = tl.t0_s, tl.t1_s
    scale, unit = _time_unit(t1 - t0)
    edges = np.linspace(t0, t1, num_bins + 1)
    bin_s = (t1 - t0) / num_bins
    labels = list(server_labels) if server_labels is not None else [f"s{j}" for j in range(n)]

    marks = [(float(t), int(j), str(ev)) for t, j, ev in marks]
    # line mode with server events: a sixth panel, one row per server, with its down periods shaded
    strip = not heat and any(j >= 0 for _, j, _ in marks) and n > 0
    ratios = [1, 1.2, 1.2, 2, 2] + ([0.35 + 0.22 * n] if strip else [])
    fig = Figure(figsize=(11, 11 if heat else 12 + (0.9 + 0.3 * n if strip else 0)))
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(ratios), 2, sharex="col", gridspec_kw={"width_ratios": [60, 1],
                                                                    "height_ratios": ratios, "hspace": 0.12,
                                                                    "wspace": 0.03})
    ax_arr, ax_q, ax_tok, ax_kv, ax_ses = axes[:5, 0]
    ax_strip = axes[5, 0] if strip else None
    for ax in (*axes[:3, 1], *axes[5:, 1]):
        ax.set_visible(False)

    # 1. arrivals per bin, rejections overlaid
    ax_arr.hist(tl.arrivals_s / scale, bins=edges / scale, color="#4C72B0", label="arrivals")
    if len(tl.rejected_s):
        ax_arr.hist(tl.rejected_s / scale, bins=edges / scale, color="#C44E52", label="rejected")
    ax_arr.set_ylabel(f"requests\nper {bin_s:.3g} s")
    ax_arr.legend(fontsize=7, loc="upper right")

    # 2. waiting (admission queue) and running sessions (swarm-wide)
    x, y = _step_xy(tl.waiting, t0, t1, scale)
    ax_q.step(x, y, where="post", color="#C44E52", lw=1.2, label="waiting for admission")
    x, y = _step_xy(tl.running, t0, t1, scale)
    ax_q.step(x, y, where="post", color="#55A868", lw=1.0, label="running sessions")
    ax_q.set_ylabel("requests")
    ax_q.set_ylim(bottom=0)
    ax_q.legend(fontsize=7, loc="upper right")

    # 3. per-token time of each completed request, at its arrival
    if len(tl.per_token_s):
        ax_tok.scatter(tl.token_arrival_s / scale, tl.per_token_s, s=4, color="#8172B2")
        lo, hi = float(tl.per_token_s.min()), float(tl.per_token_s.max())
        if lo > 0 and hi / lo > 20:
            ax_tok.set_yscale("log")
    ax_tok.set_ylabel("per-token time\nof request (s/token)")

    # 4./5. per-server panels
    for ax, cax, series, what, vmax in (
            (ax_kv, axes[3, 1], [tl.kv_utilisation(j) for j in range(n)], "KV utilisation (%)", 100.0),
            (ax_ses, axes[4, 1], tl.sessions, "active sessions", None)):
        pct = 100.0 if vmax == 100.0 else 1.0
        if heat:
            grid = np.vstack([s.bin_means(edges) * pct for s in series]) if n else np.zeros((1, num_bins))
            top = vmax if vmax is not None else max(float(grid.max()), 1.0)
            im = ax.imshow(grid, aspect="auto", interpolation="nearest", origin="upper", cmap="magma",
                           extent=(t0 / scale, t1 / scale, n - 0.5, -0.5), vmin=0, vmax=top)
            fig.colorbar(im, cax=cax, label=what + " (bin mean)")
            ax.set_ylabel("server")
            if n <= 40:
                ax.set_yticks(np.arange(n), labels, fontsize=6 if n > 16 else 7)
        else:
            cax.set_visible(False)
            for j, s in enumerate(series):
                x, y = _step_xy(s, t0, t1, scale)
                ax.step(x, y * pct, where="post", label=labels[j], **line_style(j, n))
            ax.set_ylabel(what)
            ax.set_ylim(bottom=0, top=105 if vmax == 100.0 else None)
            if n:
                ax.legend(fontsize=6, loc="upper right", ncol=min(n, 6))
            _marks_on_lines(ax, series, pct, marks, t0, t1, scale)

    _draw_marks((ax_arr, ax_q, ax_tok), (ax_kv, ax_ses), marks, heat, t1, scale)
    if ax_strip is not None:
        _draw_state_strip(ax_strip, marks, n, labels, t1, scale)

    bottom = ax_strip if ax_strip is not None else ax_ses
    bottom.set_xlabel(f"simulated time ({unit})")
    bottom.set_xlim(t0 / scale, t1 / scale)
    fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(left=0.14 if (heat and n <= 40) or strip else 0.09, right=0.93, top=0.95, bottom=0.05)
    return fig


#: marker style per server event (churn: distllm_env/live/churn.py)
MARK_STYLE = {"fail": ("x", "red"), "leave": ("v", "orange"), "join": ("^", "limegreen")}
#: with more marks than this, no vertical line per event (they would hide the data) and no labels
MAX_LABELLED_MARKS = 12


def down_intervals(marks: Sequence[tuple[float, int, str]], end_s: float) -> list[tuple[int, float, float]]:
    """``(server, down_s, up_s)`` for every period a server is down: from a ``fail`` / ``leave`` mark to
    the server's next ``join`` mark (or ``end_s``)."""
    open_at: dict[int, float] = {}
    out = []
    for t, j, ev in sorted(marks, key=lambda m: (m[0], m[1])):
        if j < 0:
            continue
        if ev in ("fail", "leave"):
            open_at.setdefault(j, t)
        elif ev == "join" and j in open_at:
            out.append((j, open_at.pop(j), t))
    out += [(j, t, end_s) for j, t in open_at.items()]
    return sorted(out, key=lambda x: (x[1], x[0]))


def _visible_down(marks, t1: float) -> list[tuple[int, float, float]]:
    """:func:`down_intervals` that start before ``t1`` (the plotted end), cut at ``t1``."""
    return [(j, a, min(b, t1)) for j, a, b in down_intervals(marks, t1) if a < t1]


#: line styles cycled per server in line mode, so that equal series stay distinguishable
LINE_STYLES = ("-", (0, (5, 2)), (0, (1, 1.5)), (0, (6, 2, 1, 2)))


def line_style(j: int, n: int) -> dict:
    """Matplotlib keywords of server j's line (of n) in the line-mode panels: the default colour cycle,
    a dash pattern cycling through :data:`LINE_STYLES`, a width falling from 2.8 (s0) to 1.0 (last) and
    a z-order rising with j, so that a line drawn over an equal earlier one leaves it visible around
    its dashes (e.g. s0 under s2)."""
    width = 2.8 - 1.8 * (j / (n - 1)) if n > 1 else 1.2
    return {"color": f"C{j % 10}", "ls": LINE_STYLES[j % len(LINE_STYLES)], "lw": width, "zorder": 2 + j / max(n, 1)}


def _marks_on_lines(ax, series: Sequence[StepSeries], pct: float, marks, t0: float, t1: float,
                    scale: float) -> None:
    """Each server event as a marker (:data:`MARK_STYLE`) on its own server's line, at the line's value
    just before the event, over a disc in the server's colour."""
    for t, j, ev in marks:
        if not (0 <= j < len(series) and t0 <= t <= t1):     # events after the last completion: off the axis
            continue
        marker, colour = MARK_STYLE.get(ev, ("o", "black"))
        y = float(series[j].at(np.nextafter(t, -np.inf))) * pct
        ax.scatter([t / scale], [y], marker="o", color=f"C{j % 10}", s=70, alpha=0.55, zorder=5)   # on j's line
        ax.scatter([t / scale], [y], marker=marker, color=colour, s=30, zorder=6)


def _draw_state_strip(ax, marks, n: int, labels: Sequence[str], t1: float, scale: float) -> None:
    """Line mode: one row per server (its line's colour); each down period (:func:`down_intervals`) a
    shaded span on the server's row and each event a marker on it."""
    for j in range(n):
        ax.axhline(j, color=f"C{j % 10}", lw=0.6, alpha=0.6, zorder=1)
    for j, a, b in _visible_down(marks, t1):
        ax.broken_barh([(a / scale, (b - a) / scale)], (j - 0.38, 0.76), facecolors=f"C{j % 10}", alpha=0.45,
                       edgecolor="black", linewidth=0.4, hatch="//", zorder=2)
    for ev, (marker, colour) in MARK_STYLE.items():
        pts = [(t / scale, j) for t, j, e in marks if e == ev and 0 <= j < n]
        if pts:
            ax.scatter(*zip(*pts), marker=marker, color=colour, s=30, zorder=4, label=ev)
    ax.broken_barh([], (0, 1), facecolors="grey", alpha=0.45, hatch="//", label="server down")
    ax.set_yticks(np.arange(n), labels, fontsize=6 if n > 8 else 7)
    ax.set_ylim(n - 0.5, -0.5)
    ax.set_ylabel("server\nup / down")
    ax.legend(fontsize=6, loc="upper right", ncol=4)


def _draw_marks(time_axes, server_axes, marks, heat: bool, t1: float, scale: float) -> None:
    """Churn marks: in heat maps, each down period as a cyan bar on the server's row and each event as a
    marker (:data:`MARK_STYLE`); with few marks (or swarm-wide ones, server −1) also a dotted vertical
    line on every panel, labelled on the KV panel."""
    marks = list(marks)
    if not marks:
        return
    few = len(marks) <= MAX_LABELLED_MARKS
    for t, j, ev in marks:
        if few or j < 0:
            for ax in (*time_axes, *server_axes):
                ax.axvline(t / scale, color="black", ls=":", lw=0.8)
            server_axes[0].annotate(f"{ev} s{j}" if j >= 0 else ev, (t / scale, 1.0),
                                    xycoords=("data", "axes fraction"), fontsize=6, rotation=90, va="top", ha="right")
    if not heat:                         # line mode: markers on the lines, spans in the state strip
        return
    for ax in server_axes:
        for j, a, b in _visible_down(marks, t1):
            ax.broken_barh([(a / scale, (b - a) / scale)], (j - 0.4, 0.8), facecolors="none", hatch="///",
                           edgecolor="cyan", linewidth=0.8, zorder=2)     # hatched: the heat map stays visible
        for ev, (marker, colour) in MARK_STYLE.items():
            pts = [(t / scale, j) for t, j, e in marks if e == ev and j >= 0]
            if pts:
                ax.scatter(*zip(*pts), marker=marker, color=colour, s=22, zorder=3, label=ev)
    server_axes[0].broken_barh([], (0, 1), facecolors="none", hatch="///", edgecolor="cyan", label="server down")
    server_axes[0].legend(fontsize=6, loc="upper right", ncol=4)


def result_title(result: Any) -> str:
    """``scenario — placement P, routing R, seed S, server model M (engine E)``."""
    m = result.meta
    model = getattr(result.scenario.simulator, "server_model", "independent")
    return (f"{m['scenario']} — placement {m['placement']}, routing {m['routing']}, seed {m['seed']}, "
            f"server model {model} ({m['engine']} engine)")


def plot_result(result: Any, path: str | Path | None = None, marks: Sequence[tuple[float, int, str]] = ()):
    """The timeline figure of a :class:`~distllm_env.api.SimulationResult`; written as PNG (or any
    format matplotlib infers from the suffix) when ``path`` is given.  Returns the Figure."""
    tl = build_timeline(result.records, result_capacity_bytes(result))
    labels = [f"s{j} {s.gpu.name}" for j, s in enumerate(result.instance.servers)]
    fig = timeline_figure(tl, result_title(result), marks, server_labels=labels)
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
    return fig


__all__ = ["LINE_STYLES", "MAX_LINE_SERVERS", "MARK_STYLE", "line_style", "StepSeries", "down_intervals", "Timeline", "build_timeline", "interval_count", "plot_result",
           "result_capacity_bytes", "result_title", "timeline_figure"]
