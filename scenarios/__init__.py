"""Scenario presets shipped as package data (distllm_env.scenarios)."""
