"""Gymnasium environments (docs/envs.md).  Registered on ``import distllm_env``."""


def register_envs() -> None:
    """Register every ``distllm/*`` environment id (idempotent)."""
    return None
