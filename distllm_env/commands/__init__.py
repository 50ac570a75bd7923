"""Sub-commands of the ``distllm-env`` CLI; each module exposes ``register(subparsers)``."""
