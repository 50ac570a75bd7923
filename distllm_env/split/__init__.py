"""Split inference (SplitLLM, arXiv 2410.10759): per-layer costs and client/server split plans.

* :mod:`.cost` — the per-layer FLOP / byte formulas;
* :mod:`.models` — layer models (Transformer, BERT, GPT-2, ViT and the catalog block models);
* :mod:`.profile` — :class:`LayerProfile` (per-request per-layer times, work, transfers),
  :func:`layer_profile`, :class:`SplitPlan`;
* :mod:`.setting` — the single-server setting of a scenario's ``split:`` section;
* :mod:`.serving` — the FIFO server, waits and the sustainable arrival rate;
* :mod:`.evaluate` — policies × requests × serving (``distllm-env split``);
* :mod:`.geo` — :class:`GeoSplitter`, the client-prefix splitter of the geo-distributed simulator.

The split policies (DP, greedy, server-only, exhaustive) live in :mod:`distllm_env.baselines.splitllm`.
See docs/split.md.
"""

from .cost import block_decode_flops, block_decode_total_flops, block_prefill_flops
from .models import LAYER_MODELS, LayerCosts, LayerModel, get_layer_model, layer_model_from_spec
from .profile import CLIENT, SERVER, LayerProfile, NetworkLink, SplitPlan, SplitServer, layer_profile, make_plan

__all__ = [
    "CLIENT", "LAYER_MODELS", "LayerCosts", "LayerModel", "LayerProfile", "NetworkLink", "SERVER", "SplitPlan",
    "SplitServer", "block_decode_flops", "block_decode_total_flops", "block_prefill_flops", "get_layer_model",
    "layer_model_from_spec", "layer_profile", "make_plan",
]
