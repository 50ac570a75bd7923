"""The dynamics picture (distllm_env/timeline.py; ``simulate --plot``, ``SimulationResult.plot``)."""

import math

import numpy as np
import pytest

from distllm_env import simulate
from distllm_env.chains import Hop, Route
from distllm_env.cli import main
from distllm_env.records import RequestRecord
from distllm_env.timeline import (StepSeries, build_timeline, down_intervals, interval_count, result_capacity_bytes,
                                  timeline_figure)

NAN = float("nan")


def rec(i, arrival, start, completion, hops, kv, out_tokens, status="completed"):
    route = Route(tuple(Hop(*h) for h in hops)) if hops else None
    return RequestRecord(request_id=i, client=0, arrival_s=arrival, start_s=start, first_token_s=start,
                         completion_s=completion, wait_s=start - arrival, prompt_tokens=1, output_tokens=out_tokens,
                         hops=len(hops), route=route, status=status, reason="" if status == "completed" else "x",
                         kv_bytes_per_block=kv)


def tiny_records():
    """Two servers.  r0 holds 2 blocks × 50 B on s0 and s1 over [0, 10); r1 waits [2, 5) then holds
    4 × 25 B on s0 over [5, 8); r2 is rejected at 4; r3 waits [6, 10) for r0's memory and holds 4 × 10 B
    on s1 over [10, 12)."""
    return [rec(0, 0.0, 0.0, 10.0, [(0, 0, 1), (1, 2, 3)], 50, 5),
            rec(1, 2.0, 5.0, 8.0, [(0, 0, 3)], 25, 3),
            rec(2, 4.0, NAN, NAN, [], 0, 7, status="rejected"),
            rec(3, 6.0, 10.0, 12.0, [(1, 0, 3)], 10, 4)]


def levels_at(s: StepSeries, ts):
    return [int(v) for v in s.at(np.asarray(ts, dtype=float))]


TS = [-1, 0, 1, 2, 4.99, 5, 6, 7.5, 8, 9.9, 10, 11, 12, 13]


def test_series_match_hand_computed_values():
    tl = build_timeline(tiny_records(), [1000, 500])
    #                               -1  0    1    2    4.99 5    6    7.5  8    9.9  10   11  12 13
    assert levels_at(tl.kv_bytes[0], TS) == [0, 100, 100, 100, 100, 200, 200, 200, 100, 100, 0, 0, 0, 0]
    # at 10, r0 releases 100 B on s1 before r3 takes 40 B
    assert levels_at(tl.kv_bytes[1], TS) == [0, 100, 100, 100, 100, 100, 100, 100, 100, 100, 40, 40, 0, 0]
    assert levels_at(tl.sessions[0], TS) == [0, 1, 1, 1, 1, 2, 2, 2, 1, 1, 0, 0, 0, 0]
    assert levels_at(tl.sessions[1], TS) == [0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0]   # never 2 at t = 10
    assert levels_at(tl.waiting, TS) == [0, 0, 0, 1, 1, 0, 1, 1, 1, 1, 0, 0, 0, 0]
    assert levels_at(tl.running, TS) == [0, 1, 1, 1, 1, 2, 2, 2, 1, 1, 1, 1, 0, 0]
    assert tl.arrivals_s.tolist() == [0.0, 2.0, 4.0, 6.0]
    assert tl.rejected_s.tolist() == [4.0]
    assert tl.token_arrival_s.tolist() == [0.0, 2.0, 6.0]
    assert tl.per_token_s.tolist() == [2.0, 2.0, 1.5]          # 10/5, (8−2)/3, (12−6)/4
    assert (tl.t0_s, tl.t1_s) == (0.0, 12.0)
    # utilisation: bytes / capacity
    assert tl.kv_utilisation(1).at(10.5) == pytest.approx(40 / 500)
    # exact bin averages: s0 over [0, 6): (5·100 + 1·200)/6; over [6, 12): (2·200 + 2·100)/6
    assert tl.kv_bytes[0].bin_means(np.array([0.0, 6.0, 12.0])).tolist() == pytest.approx([700 / 6, 100.0])
    # waiting over [0, 3): [2, 3) = 1 s of 3; over [3, 12): [3, 5) + [6, 10) = 6 s of 9
    assert tl.waiting.bin_means(np.array([-2.0, 0.0, 3.0, 12.0])).tolist() == pytest.approx([0.0, 1 / 3, 6 / 9])


def test_interval_count_skips_empty_and_collapses_equal_times():
    s = interval_count([0.0, 1.0, 1.0, 3.0], [1.0, 2.0, 1.0, 4.0])
    assert s.times.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert s.levels.tolist() == [1, 1, 0, 1, 0]
    empty = interval_count([], [])
    assert len(empty.times) == 0 and empty.bin_means(np.array([0.0, 1.0])).tolist() == [0.0]


@pytest.mark.parametrize("model", ["independent", "serial"])
def test_series_of_a_real_run_agree_with_the_summary(model):
    res = simulate("tiny", "even", "shortest", seed=3,
                   overrides=[f"simulator.server_model={model}", "workload.arrival_rate_per_s=50",
                             "workload.prompt_tokens=400", "workload.output_tokens=400"])
    cap = result_capacity_bytes(res)
    tl = build_timeline(res.records, cap)
    edges = np.array([tl.t0_s, tl.t1_s])
    for j in range(tl.num_servers):
        u = tl.kv_utilisation(j)
        # the time-average over the run equals the summary's memory_utilisation (independent computation)
        assert u.bin_means(edges)[0] == pytest.approx(res.summary["memory_utilisation"][j], rel=1e-9, abs=1e-12)
        assert (u.levels <= 1.0 + 1e-12).all()                     # memory never over-committed
        assert tl.sessions[j].at(tl.t1_s) == 0 and tl.kv_bytes[j].at(tl.t1_s) == 0   # all released
    assert (tl.waiting.levels >= 0).all() and tl.waiting.at(tl.t1_s) == 0
    assert any(tl.waiting.levels > 0)                                 # memory binds: requests wait
    done = [r for r in res.records if r.completed]
    assert len(tl.per_token_s) == len(done)
    # mean per-token time from the reconstructed per-request values matches the summary's definition
    tokens = np.array([r.output_tokens for r in done])
    assert (tl.per_token_s * tokens).sum() / tokens.sum() == pytest.approx(res.summary["mean_per_token_time_s"])
    # the waiting-time integral equals Σ wait_s (every completed request counted once)
    area = tl.waiting.bin_means(edges)[0] * (tl.t1_s - tl.t0_s)
    assert area == pytest.approx(sum(r.wait_s for r in done), rel=1e-9, abs=1e-9)


def test_plot_writes_png_lines_and_heat_map(tmp_path):
    res = simulate("tiny", "even", "shortest", seed=1)
    fig = res.plot(tmp_path / "a" / "t.png", marks=[(0.5, 1, "fail")])
    assert (tmp_path / "a" / "t.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "tiny" in fig._suptitle.get_text() and "seed 1" in fig._suptitle.get_text()
    labels = [ax.get_ylabel() for ax in fig.axes]
    assert "KV utilisation (%)" in labels and "active sessions" in labels
    assert any(ax.get_xlabel().startswith("simulated time (") for ax in fig.axes)
    tl = build_timeline(res.records, result_capacity_bytes(res))
    heat = timeline_figure(tl, "heat", [(0.5, 2, "leave")], max_line_servers=2)
    assert any(ax.get_images() for ax in heat.axes)                # per-server heat maps
    heat.savefig(tmp_path / "h.png")
    assert (tmp_path / "h.png").stat().st_size > 0


def test_cli_plot_flag(tmp_path, capsys):
    out = tmp_path / "p.png"
    assert main(["simulate", "--scenario", "tiny", "--placement", "even", "--routing", "shortest",
                 "--plot", str(out)]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"
    assert "timeline plot written" in capsys.readouterr().out


@pytest.mark.parametrize("bad", ["x.txt", "DIR"])
def test_cli_plot_path_checked_before_the_run(tmp_path, capsys, bad):
    path = str(tmp_path) if bad == "DIR" else str(tmp_path / bad)
    assert main(["simulate", "--scenario", "tiny", "--plot", path]) == 2
    err = capsys.readouterr().err
    assert "--plot" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_no_completed_request_still_draws(tmp_path):
    tl = build_timeline([rec(0, 1.0, NAN, NAN, [], 0, 3, status="rejected")], [100])
    assert tl.rejected_s.tolist() == [1.0] and math.isclose(tl.t1_s, 2.0)
    timeline_figure(tl, "empty").savefig(tmp_path / "e.png")


def test_down_intervals_hand_computed():
    marks = [(5.0, 1, "join"), (1.0, 1, "fail"), (2.0, 0, "leave"), (3.0, 0, "fail"), (4.0, 0, "join"),
             (6.0, 2, "fail"), (7.0, -1, "note")]
    # s1 down [1, 5); s0 down from its leave at 2 (the later fail does not restart it) to 4; s2 to the end
    assert down_intervals(marks, 10.0) == [(1, 1.0, 5.0), (0, 2.0, 4.0), (2, 6.0, 10.0)]


def test_plot_marks_the_runs_own_server_events(tmp_path):
    res = simulate("tiny", "even", "shortest", seed=0,
                   overrides=["churn.distribution=exponential", "churn.mean_uptime_s=20", "churn.mean_downtime_s=5"])
    n = len(res.server_events)
    assert n > 12 and all(ev in ("fail", "leave", "join") for _, _, ev in res.server_events)
    assert all(0 <= j < res.instance.num_servers for _, j, _ in res.server_events)
    fig = res.plot(tmp_path / "churn.png")
    assert (tmp_path / "churn.png").stat().st_size > 0
    # default marks = the run's events; many of them on 4 servers (line panels): each event inside the
    # plotted time range is a marker (over a disc) on its own server's line, no dotted lines
    tl = build_timeline(res.records, result_capacity_bytes(res))
    shown = [(t, j) for t, j, _ in res.server_events if tl.t0_s <= t <= tl.t1_s]
    per_server = {ax.get_ylabel(): ax for ax in fig.axes if ax.get_ylabel() in ("KV utilisation (%)", "active sessions")}
    assert len(per_server) == 2
    ax = per_server["active sessions"]
    points = sorted(tuple(p) for c in ax.collections for p in c.get_offsets())
    expected = sorted((t, float(tl.sessions[j].at(np.nextafter(t, -np.inf)))) for t, j in shown for _ in range(2))
    assert np.allclose(points, expected)
    assert not any(ln.get_linestyle() == ":" for ax in fig.axes for ln in ax.get_lines())
    # a sixth panel, one row per server: the down periods as spans on the server's row
    strip = [ax for ax in fig.axes if ax.get_ylabel() == "server\nup / down"]
    assert len(strip) == 1
    bars = [c for c in strip[0].collections if type(c).__name__ == "PolyCollection" and len(c.get_paths())]
    downs = [(j, a, min(b, tl.t1_s)) for j, a, b in down_intervals(res.server_events, tl.t1_s) if a < tl.t1_s]
    assert len(bars) == len(downs)
    for c, (j, a, b) in zip(bars, downs):
        verts = c.get_paths()[0].vertices
        assert np.isclose(verts[:, 0].min(), a) and np.isclose(verts[:, 0].max(), b)
        assert np.isclose((verts[:, 1].min() + verts[:, 1].max()) / 2, j)
    # few explicit marks: a dotted line on each of the five panels; an empty list draws none
    fig2 = res.plot(marks=[(1.0, 0, "fail"), (2.0, 0, "join"), (3.0, -1, "note")])
    assert sum(1 for ax in fig2.axes for ln in ax.get_lines() if ln.get_linestyle() == ":") == 15
    fig3 = res.plot(marks=[])
    assert not any(ln.get_linestyle() == ":" for ax in fig3.axes for ln in ax.get_lines())
