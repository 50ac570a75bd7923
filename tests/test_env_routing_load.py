"""RequestRouting load features, the defer action and the speed refactor (issue 13 items 3 and 7).

* a fixed episode's observations, rewards and RoutingFeatures output are the ones recorded before the
  speed work (hand-recorded fingerprints; the load features leave the existing keys untouched);
* requests carry declared lengths only under unknown output lengths;
* the load features agree with the view (hand aggregation) and with ws-rr-load's contention term;
* the defer action re-offers the request later, which is then committed exactly once, its wait counted.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import distllm_env  # noqa: F401 - registers the ids
from distllm_env.agents.wrappers import RoutingFeatures
from distllm_env.baselines.ws_rr_load import WSRRLoadRouter
from distllm_env.envs import DEFER_DEFAULTS, env_id
from distllm_env.errors import ScenarioError

PC = "distllm/RequestRouting-PaperClustered-v0"
SERIAL = "distllm/RequestRouting-AzureConvSerial-v0"
SWARM = "distllm/RequestRouting-AzureConvSwarm-v0"
DEFER = "distllm/RequestRoutingDefer-AzureConvSwarm-v0"

#: recorded with the code before issue 13 item 7 (seed 3, masked-random actions from default_rng(7))
GOLDEN = {
    PC: {"n": 100, "return": -98.25629630625014, "wrapper": 17615.52950035641, "keys": {
        "server_mask": 3131.0, "server_start_frac": 577.1428686454892, "server_count_frac": 352.05715046823025,
        "server_tau_decode_s": 46.927175091113895, "server_rtt_s": 310.00000461935997,
        "server_free_frac": 2699.9464209377766, "server_next_release_s": 138547.3105686903, "cand_mask": 2900.0,
        "cand_static_s": 376424.2347717285, "cand_wait_s": 0.0, "cand_fits": 2900.0, "cand_hops": 12400.0,
        "cand_blocks_frac": 2948.571518063545, "request_tokens": 27600.0, "progress": 50.49999999627471}},
    SERIAL: {"n": 300, "return": -202.78068810003467, "wrapper": 75249.31820783808, "keys": {
        "server_mask": 16856.0, "server_start_frac": 4695.599953353405, "server_count_frac": 8345.224935412407,
        "server_tau_decode_s": 59.12543254374759, "server_rtt_s": 1678.5528142871335,
        "server_free_frac": 14754.737217284739, "server_next_release_s": 2105235.626090616, "cand_mask": 8729.0,
        "cand_static_s": 7637694.65045166, "cand_wait_s": 2687461.3586297035, "cand_fits": 8729.0,
        "cand_hops": 17276.0, "cand_blocks_frac": 8473.587449908257, "request_tokens": 2135960.0,
        "progress": 75.25000001234002}},
}


def _fingerprint(eid: str, n: int, config: dict | None = None, seed: int = 3) -> dict:
    env = RoutingFeatures(gym.make(eid, disable_env_checker=True, **({"config": config} if config else {})))
    rng = np.random.default_rng(7)
    wobs, info = env.reset(seed=seed)
    keys = list(GOLDEN[PC]["keys"])
    sums = {k: 0.0 for k in keys}
    wsum, rewards = 0.0, []

    def acc(raw, w):
        nonlocal wsum
        for k in keys:
            sums[k] += float((np.abs(raw[k]) * (1 + np.arange(len(raw[k])) % 7)).sum())
        base = np.concatenate([w[: env.K * env.PER_CAND], w[-(env.GLOBAL + env.DEFER_GLOBAL * env.defer):][: env.GLOBAL]])
        wsum += float((base.astype(np.float64) * (1 + np.arange(len(base)) % 5)).sum())

    acc(env.unwrapped._last_obs, wobs)
    for _ in range(n):
        a = int(rng.choice(np.flatnonzero(info["action_mask"])))
        wobs, r, te, _, info = env.step(a)
        rewards.append(r)
        acc(env.unwrapped._last_obs, wobs)
        if te:
            break
    return {"n": len(rewards), "return": sum(rewards), "wrapper": wsum, "keys": sums}


@pytest.mark.parametrize("eid", [PC, SERIAL])
def test_fixed_episode_is_unchanged_by_the_speed_work(eid):
    gold = GOLDEN[eid]
    for config in ({"load_features": False}, None):       # the load features leave the other keys alone
        got = _fingerprint(eid, 300, config)
        assert got["n"] == gold["n"]
        assert got["return"] == pytest.approx(gold["return"], rel=1e-12)
        assert got["wrapper"] == pytest.approx(gold["wrapper"], rel=1e-12)
        for k, v in gold["keys"].items():
            assert got["keys"][k] == pytest.approx(v, rel=1e-12, abs=1e-12), k


def test_requests_carry_declared_lengths_only():
    env = gym.make(SWARM, disable_env_checker=True, overrides=["workload.num_requests=60"])
    u = env.unwrapped
    obs, info = env.reset(seed=0)
    differ = 0
    while True:
        req = u.request
        true = u.sim._true[req.id]          # engine-private true length (test only)
        assert obs["request_tokens"][1] == req.declared_output_tokens
        differ += true.output_tokens != true.declared_output_tokens
        obs, _, te, _, info = env.step(int(np.flatnonzero(info["action_mask"])[0]))
        if "per_token_time_s" in info and np.isfinite(info["per_token_time_s"]):
            assert info["per_token_time_s"] == pytest.approx(
                (info["completion_s"] - true.arrival_s) / true.declared_output_tokens)
        if te:
            break
    assert differ > 0              # the scenario does hide lengths, so the check above means something


def _mid_episode(eid: str, steps: int, **kw):
    env = gym.make(eid, disable_env_checker=True, **kw)
    obs, info = env.reset(seed=1)
    for _ in range(steps):
        obs, _, _, _, info = env.step(int(np.flatnonzero(info["action_mask"])[0]))
    return env.unwrapped, obs


def test_load_features_aggregate_the_views_load_per_hop():
    u, obs = _mid_episode(SERIAL, 150)
    view, req, c = u.view, u.request, u._cands
    N = u.instance.num_servers
    active = np.array([view.active_sessions(j) for j in range(N)], dtype=float)
    queued = np.array([view.queued_work_s(j) for j in range(N)])
    assert active.sum() > 0 and queued.sum() > 0               # a loaded state
    np.testing.assert_allclose(obs["server_active_sessions"][:N], active)
    np.testing.assert_allclose(obs["server_queued_s"][:N], queued, rtol=1e-6)
    l = req.output_tokens
    for k, r in enumerate(c.routes):
        js = [h.server for h in r.hops]
        assert obs["cand_active_max"][k] == active[js].max() and obs["cand_active_sum"][k] == active[js].sum()
        assert obs["cand_queued_max_s"][k] == pytest.approx(queued[js].max(), rel=1e-6)
        assert obs["cand_queued_sum_s"][k] == pytest.approx(queued[js].sum(), rel=1e-6)
        assert obs["cand_free_min"][k] == pytest.approx(min(obs["server_free_frac"][j] for j in js), rel=1e-6)
        # serial: ws-rr-load's hop term l·n_j·m·τ_j + q_j, by hand
        cont = sum(l * active[h.server] * h.blocks * u.instance.tau_decode_s[h.server] + queued[h.server]
                   for h in r.hops)
        start = u._starts[k]
        expect = (c.static_s[k] + (start - u.sim.now_s) + cont) / l
        assert obs["cand_load_per_token_s"][k] == pytest.approx(min(expect, u.config["max_time_s"]), rel=1e-5)
    for k in range(len(c.routes), u.config["K"]):          # padding stays 0
        assert obs["cand_load_per_token_s"][k] == 0 and obs["cand_active_max"][k] == 0
    assert obs["server_step_ewma_s"][:N].max() > 0           # sessions ended, step times observed


@pytest.mark.parametrize("eid", [SERIAL, SWARM])
def test_hop_contention_agrees_with_ws_rr_load(eid):
    u, _ = _mid_episode(eid, 120)
    req, view = u.request, u.view
    dag = view.feasible_dag(req.client, req.client_blocks)
    ref = WSRRLoadRouter().contention_s(req, view, dag)
    N = u.instance.num_servers
    active = np.array([view.active_sessions(j) for j in range(N)], dtype=float)
    queued = np.array([view.queued_work_s(j) for j in range(N)])
    srv = dag.edge_dst_server.astype(np.intp)
    mine = u.hop_contention_s(req, srv, dag.edge_blocks.astype(float), active[srv], queued[srv])
    assert ref.max() > 0
    np.testing.assert_allclose(mine, ref, rtol=1e-12)


def test_analytic_ids_have_no_load_keys_and_a_fixed_layout():
    plain = gym.make(PC)
    assert "cand_load_per_token_s" not in plain.observation_space.spaces
    loaded = gym.make(PC, config={"load_features": True})
    assert "cand_load_per_token_s" in loaded.observation_space.spaces
    # the layout depends on the config only: the same keys and shapes on a live scenario
    other = gym.make("distllm/RequestRouting-v0", scenario="azure-conv-swarm", config={"load_features": True})
    assert other.observation_space == loaded.observation_space
    obs, info = loaded.reset(seed=0)
    for _ in range(30):
        obs, *_, info = loaded.step(int(np.flatnonzero(info["action_mask"])[0]))
    assert obs["cand_queued_sum_s"].sum() == 0 and obs["server_step_ewma_s"].sum() == 0   # independent servers
    n = int(obs["cand_mask"].sum())
    expect = (obs["cand_static_s"][:n].astype(float) + obs["cand_wait_s"][:n]) / obs["request_tokens"][1]
    np.testing.assert_allclose(obs["cand_load_per_token_s"][:n], expect, rtol=1e-5)   # no contention term


def test_preset_ids_keep_their_defaults_under_a_user_config():
    env = gym.make(DEFER, config={"K": 4})
    assert env.unwrapped.config["defer_s"] == DEFER_DEFAULTS["defer_s"] and env.unwrapped.config["K"] == 4
    assert env.action_space.n == 5
    assert gym.make(SWARM, config={"K": 4}).unwrapped.config["load_features"] is True
    assert gym.make(SWARM, config={"load_features": False}).unwrapped.config["load_features"] is False
    assert env_id("RequestRoutingDefer", "azure-conv-swarm") == DEFER


@pytest.mark.parametrize("bad", [{"defer_s": 0}, {"defer_s": -1.0}, {"defer_s": "2"}, {"max_defers": 0},
                                 {"load_features": 1}])
def test_bad_defer_and_load_config_raise_naming_the_field(bad):
    with pytest.raises(ScenarioError) as err:
        gym.make(PC, config=bad)
    assert err.value.path == f"config.{next(iter(bad))}"


@pytest.mark.parametrize("eid,config", [(PC, {"defer_s": 5.0, "max_defers": 2}), (DEFER, {"max_defers": 2})])
def test_deferred_request_is_committed_later_exactly_once(eid, config):
    env = gym.make(eid, disable_env_checker=True, config=config, overrides=["workload.num_requests=30"])
    u = env.unwrapped
    K = u.config["K"]
    obs, info = env.reset(seed=2)
    first = u.request
    t0 = u.sim.now_s
    assert info["action_mask"][K] == 1
    obs, r, _, _, info = env.step(K)                         # defer once
    assert info["deferred"] and info["request_id"] == first.id and info["reward_components"]["rejection"] == 0
    assert obs["request_defers_frac"][0] == pytest.approx(0.5) or u.request.id != first.id
    # walk on, deferring the first request again whenever it is offered, until the mask forbids it
    seen_again, defers = 0, 1
    while True:
        req = u.request
        if req.id == first.id:
            seen_again += 1
            assert u.sim.now_s == pytest.approx(t0 + defers * u.config["defer_s"])
            assert obs["request_age_s"][0] == pytest.approx(u.sim.now_s - first.arrival_s, rel=1e-6)
            if info["action_mask"][K]:
                defers += 1
                obs, r, te, _, info = env.step(K)
                continue
            assert defers == 2                               # max_defers reached: defer masked
        obs, r, te, _, info = env.step(int(np.flatnonzero(info["action_mask"][:K])[0]))
        if te:
            break
    assert seen_again == 2
    recs = u.sim.finished_records()
    ids = [rec.request_id for rec in recs]
    assert sorted(ids) == list(range(30))                    # every request accounted for exactly once
    rec = next(x for x in recs if x.request_id == first.id)
    assert rec.arrival_s == first.arrival_s
    if rec.completed:
        assert rec.start_s >= t0 + 2 * u.config["defer_s"] - 1e-9   # the defers count in its wait / TTFT
        assert rec.wait_s >= 2 * u.config["defer_s"] - 1e-9
    assert sum(1 for a in u.episode_record().actions if a == K) == 2


def test_defer_is_masked_at_the_terminal_state_and_off_by_default():
    env = gym.make(PC, overrides=["workload.num_requests=5"], config={"defer_s": 1.0})
    obs, info = env.reset(seed=0)
    while True:
        obs, _, te, _, info = env.step(0)
        if te:
            break
    assert info["action_mask"].tolist() == [1] + [0] * 8
    assert gym.make(PC).action_space.n == 8


def test_wrapper_exposes_the_load_features():
    env = RoutingFeatures(gym.make(DEFER, disable_env_checker=True, overrides=["workload.num_requests=80"]))
    K = env.K
    assert env.observation_space.shape == (K * (env.PER_CAND + env.LOAD_PER_CAND) + env.GLOBAL + env.DEFER_GLOBAL,)
    obs, info = env.reset(seed=1)
    for _ in range(40):
        obs, *_, info = env.step(int(np.flatnonzero(info["action_mask"][:K])[0]))
    raw = env.unwrapped._last_obs
    load = obs[K * env.PER_CAND: K * (env.PER_CAND + env.LOAD_PER_CAND)].reshape(K, env.LOAD_PER_CAND)
    valid = (raw["cand_mask"] > 0.5) & (raw["cand_fits"] > 0.5)
    est = np.where(valid, raw["cand_load_per_token_s"], np.inf)
    assert load[int(np.argmin(est)), 1] == 1.0 and load[int(np.argmin(est)), 0] == 0.0
    np.testing.assert_allclose(load[valid, 5], raw["cand_free_min"][valid])
    assert obs[-2] == pytest.approx(raw["request_defers_frac"][0])


def test_episode_with_defers_replays_exactly(tmp_path):
    from distllm_env.envs.policies import MaskedRandomPolicy
    from distllm_env.replay import EpisodeRecord, record_episode, replay

    env = gym.make(DEFER, overrides=["workload.num_requests=15"])
    rec = record_episode(env, MaskedRandomPolicy(5), seed=17)
    assert rec.terminated and env.unwrapped.config["K"] in rec.actions        # some defers were drawn
    loaded = EpisodeRecord.load(rec.save(tmp_path / "ep.json"))
    assert loaded == rec
    result = replay(loaded)
    assert result.valid, result.mismatches
    assert result.rewards == list(rec.rewards)


@pytest.mark.parametrize("text,live", [
    ("simulator:\n  server_model: batched\n", True),
    ("simulator:\n  server_model: serial   # strict PETALS\n", True),
    ("workload:\n  output_tokens_known: false\n", True),
    ("simulator:\n  server_model: independent\n", False),
    ("# server_model: serial in a comment line\nsimulator: {}\n", False),
    ("simulator:\n  server_model: batched\nchurn:\n  mean_uptime_s: 600\n", False),   # churn: its own ids
])
def test_live_preset_scan(text, live):
    from distllm_env.envs import uses_live_routing

    assert uses_live_routing(text) is live
