"""Gymnasium environments (see docs/envs.md)."""
