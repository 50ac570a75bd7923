"""Reference policies for distllm-env (installed as ``distllm_env.baselines``).

Each policy follows the protocols of :mod:`distllm_env.protocols` and is registered by name in
:mod:`distllm_env.registry`.
"""
