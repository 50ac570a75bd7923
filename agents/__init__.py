"""Agents: SB3 / RLlib training and evaluation (installed as distllm_env.agents)."""
