"""Layer models for split inference: the chains of layers a request runs through.

A :class:`LayerModel` is an ordered chain ``[embed] + blocks + [head]``.  The embedding and the head
are layers of their own when the model has them (the SplitLLM single-server setting: the server hosts
the whole model, the raw input starts at the client and the final output must return to it); the
block-level PETALS models of the core catalog have neither, because a PETALS client always runs the
embeddings and the LM head itself (docs/model.md §8) — their chain is the blocks only,
the input at boundary 0 is the embedded prompt and the output at boundary L the last hidden state.

Catalog (shapes from the cited papers / public ``config.json`` files; every one has d_ff = 4·d, so the
dense part of a block is 24·d² FLOPs per token):

* ``transformer-base`` — Vaswani et al. 2017, "Attention Is All You Need", Table 3 base: N = 6,
  d_model 512, d_ff 2048, h 8; §5.1: shared source-target BPE vocabulary of about 37000 tokens.
  Modelled as a chain of 12 identical layers (6 encoder + 6 decoder) with an LM head;
  cross-attention and the encoder-memory hand-over are not modelled (a chain cannot express them).
* ``bert-base`` / ``bert-large`` — Devlin et al. 2019, BERT: L 12 / 24, H 768 / 1024, A 12 / 16,
  512 positions, vocabulary 30522 (``bert-base-uncased`` config.json); head = pooler + a 2-class
  classifier (sentence classification, an assumption).
* ``gpt2-small`` / ``-medium`` / ``-large`` / ``-xl`` — Radford et al. 2019, GPT-2, Table 2: 12 / 24 /
  36 / 48 layers, d_model 768 / 1024 / 1280 / 1600; vocabulary 50257, context 1024.
* ``vit-b-16`` / ``vit-l-16`` — Dosovitskiy et al. 2021, ViT, Table 1: Base 12 layers, hidden 768,
  MLP 3072, 12 heads; Large 24, 1024, 4096, 16; patch 16×16×3; 1000-class ImageNet head.  A request's
  ``prompt_tokens`` is the sequence length n = patches + 1 ([CLS]); 197 for 224² images, 577 for 384².
* every block model of the core catalog (``BLOOM-176B``, ``Llama-2-70B``, …) via
  :func:`layer_model_from_spec`, with dense FLOPs per token = 2 × parameters per block.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

import numpy as np

from ..catalog import ModelSpec
from ..errors import ScenarioError
from . import cost

EMBED_KINDS = (None, "tokens", "patches")
HEAD_KINDS = (None, "lm", "classifier")


@dataclass(frozen=True)
class LayerCosts:
    """Per-layer FLOPs and per-boundary bytes of one request on one layer model.

    ``prefill_flops[l]`` / ``decode_flops[l]``: FLOPs of layer l for the prompt pass and for all
    ``decode_steps`` decode steps together.  Boundary b (0 … L) lies before layer b: boundary 0 is
    the raw input, boundary L the final output; ``boundary_prefill_bytes[b]`` is the message sent
    across it during the prompt pass and ``boundary_step_bytes[b]`` the message of each decode step.
    """

    layer_names: tuple[str, ...]
    prefill_flops: np.ndarray
    decode_flops: np.ndarray
    boundary_prefill_bytes: np.ndarray
    boundary_step_bytes: np.ndarray
    prompt_tokens: int
    output_tokens: int

    @property
    def decode_steps(self) -> int:
        """g = output_tokens − 1: the first output token comes from the prompt pass."""
        return self.output_tokens - 1

    @property
    def flops(self) -> np.ndarray:
        """Total FLOPs per layer (prompt pass + every decode step)."""
        return self.prefill_flops + self.decode_flops

    @property
    def num_layers(self) -> int:
        return len(self.layer_names)


@dataclass(frozen=True)
class LayerModel:
    """A model as a chain of layers for split inference (see the module docstring for the catalog)."""

    name: str
    family: str
    num_blocks: int
    d_model: int
    max_sequence_tokens: int
    embed: str | None = "tokens"
    head: str | None = "lm"
    vocab_size: int = 0
    num_classes: int = 0
    pooler: bool = False
    patch_size: int = 0
    channels: int = 3
    generative: bool = False
    dense_flops_per_token: float | None = None   # per block; None = 24·d²
    bytes_per_value: int = 2                     # fp16/bf16 activations
    block_weight_bytes: int = 0                  # bytes of one block's weights (client memory checks)
    source: str = ""

    def __post_init__(self):
        if self.embed not in EMBED_KINDS:
            raise ValueError(f"{self.name}: embed must be one of {EMBED_KINDS}, got {self.embed!r}")
        if self.head not in HEAD_KINDS:
            raise ValueError(f"{self.name}: head must be one of {HEAD_KINDS}, got {self.head!r}")
        if self.num_blocks < 1 or self.d_model < 1:
            raise ValueError(f"{self.name}: num_blocks and d_model must be ≥ 1")
        if self.head == "lm" and self.vocab_size < 1:
            raise ValueError(f"{self.name}: an LM head needs vocab_size ≥ 1")
        if self.head == "classifier" and self.num_classes < 1:
            raise ValueError(f"{self.name}: a classifier head needs num_classes ≥ 1")
        if self.embed == "patches" and self.patch_size < 1:
            raise ValueError(f"{self.name}: patch embedding needs patch_size ≥ 1")

    @property
    def layer_names(self) -> tuple[str, ...]:
        names = [f"block{i}" for i in range(self.num_blocks)]
        if self.embed is not None:
            names.insert(0, "embed")
        if self.head is not None:
            names.append("head")
        return tuple(names)

    @property
    def num_layers(self) -> int:
        return self.num_blocks + (self.embed is not None) + (self.head is not None)

    @property
    def block_dense_flops_per_token(self) -> float:
        return 24.0 * self.d_model ** 2 if self.dense_flops_per_token is None else float(self.dense_flops_per_token)

    def check_lengths(self, prompt_tokens: int, output_tokens: int, path: str = "request") -> None:
        """Raise :class:`ScenarioError` unless the lengths are valid for this model."""
        if isinstance(prompt_tokens, bool) or int(prompt_tokens) != prompt_tokens or prompt_tokens < 1:
            raise ScenarioError(f"{path}.prompt_tokens", f"expected an integer ≥ 1, got {prompt_tokens!r}")
        if isinstance(output_tokens, bool) or int(output_tokens) != output_tokens or output_tokens < 1:
            raise ScenarioError(f"{path}.output_tokens", f"expected an integer ≥ 1, got {output_tokens!r}")
        if self.embed == "patches" and prompt_tokens < 2:
            raise ScenarioError(f"{path}.prompt_tokens", f"{self.name} needs ≥ 2 tokens (patches + [CLS]), "
                                                         f"got {prompt_tokens}")
        if not self.generative and output_tokens != 1:
            raise ScenarioError(f"{path}.output_tokens", f"{self.name} is not generative: expected 1 "
                                                         f"(one forward pass), got {output_tokens}")
        if prompt_tokens + output_tokens - 1 > self.max_sequence_tokens:
            raise ScenarioError(f"{path}.prompt_tokens",
                                f"prompt + generated context ({prompt_tokens} + {output_tokens - 1}) exceeds "
                                f"{self.name}'s maximum sequence of {self.max_sequence_tokens} tokens")

    def layer_costs(self, prompt_tokens: int, output_tokens: int = 1) -> LayerCosts:
        """FLOPs per layer and bytes per boundary for a request of ``prompt_tokens`` input tokens that
        produces ``output_tokens`` tokens (1 = one forward pass; g = output_tokens − 1 decode steps).

        Boundary messages (prompt pass / each decode step):

        * boundary 0, the raw input: token ids (4 bytes per token / 4 bytes), raw uint8 image patches
          (patches·P²·C bytes), or, without an embedding layer, the embedded prompt (n·d·b / d·b);
        * between layers: hidden states n·d·b / d·b;
        * before the head: only the position the head reads (the last token, or [CLS]): d·b / d·b;
        * the final output: a sampled token id (4 bytes per output token) for an LM head, C fp16
          logits for a classifier, or the last hidden state d·b without a head.
        """
        self.check_lengths(prompt_tokens, output_tokens)
        n, g, d, b = int(prompt_tokens), int(output_tokens) - 1, self.d_model, self.bytes_per_value
        dense = self.block_dense_flops_per_token
        pre, dec, bpre, bstep = [], [], [], []
        # boundary 0 (raw input)
        if self.embed == "tokens":
            bpre.append(n * cost.TOKEN_ID_BYTES)
            bstep.append(cost.TOKEN_ID_BYTES)
            pre.append(float(cost.embed_flops(n, d)))
            dec.append(float(cost.embed_flops(g, d)))
        elif self.embed == "patches":
            patches = n - 1
            bpre.append(patches * self.patch_size ** 2 * self.channels)
            bstep.append(0)
            pre.append(float(cost.patch_embed_flops(patches, self.patch_size, self.channels, d) + cost.embed_flops(n, d)))
            dec.append(0.0)
        else:
            bpre.append(float(cost.activation_bytes(n, d, b)))
            bstep.append(float(cost.activation_bytes(1, d, b)))
        if self.embed is not None:   # boundary after the embedding
            bpre.append(float(cost.activation_bytes(n, d, b)))
            bstep.append(float(cost.activation_bytes(1, d, b)))
        block_pre = float(cost.block_prefill_flops(n, d, dense))
        block_dec = float(cost.block_decode_total_flops(n, g, d, dense))
        for i in range(self.num_blocks):
            pre.append(block_pre)
            dec.append(block_dec)
            last = i == self.num_blocks - 1
            if not last:
                bpre.append(float(cost.activation_bytes(n, d, b)))
                bstep.append(float(cost.activation_bytes(1, d, b)))
        # boundary after the last block: the head reads one position; without a head it is the output
        bpre.append(float(cost.activation_bytes(1, d, b)))
        bstep.append(float(cost.activation_bytes(1, d, b)))
        if self.head == "lm":
            pre.append(float(cost.lm_head_flops(1, d, self.vocab_size)))
            dec.append(float(cost.lm_head_flops(g, d, self.vocab_size)))
            bpre.append(cost.TOKEN_ID_BYTES)
            bstep.append(cost.TOKEN_ID_BYTES)
        elif self.head == "classifier":
            pre.append(float(cost.classifier_head_flops(d, self.num_classes, self.pooler)))
            dec.append(0.0)
            bpre.append(self.num_classes * b)
            bstep.append(0)
        if g == 0:
            bstep = [0.0] * len(bstep)
        names = self.layer_names
        assert len(pre) == len(names) and len(bpre) == len(names) + 1
        return LayerCosts(
            layer_names=names, prefill_flops=_ro(pre), decode_flops=_ro(dec),
            boundary_prefill_bytes=_ro(bpre), boundary_step_bytes=_ro(bstep),
            prompt_tokens=n, output_tokens=int(output_tokens),
        )


def _ro(values) -> np.ndarray:
    a = np.asarray(values, dtype=float)
    a.setflags(write=False)
    return a


_VASWANI = ("Vaswani et al. 2017, Attention Is All You Need, Table 3 (base: N=6, d_model 512, d_ff 2048, h 8) "
            "and §5.1 (shared vocabulary of about 37000 BPE tokens); modelled as 12 identical layers")
_BERT = "Devlin et al. 2019, BERT (L, H, A as listed; 512 positions); vocabulary 30522 (bert-base-uncased config.json)"
_GPT2 = "Radford et al. 2019, GPT-2, Table 2 (layers, d_model); vocabulary 50257, context 1024 (gpt2 config.json)"
_VIT = "Dosovitskiy et al. 2021, ViT, Table 1 (layers, hidden, MLP 4·hidden); patch 16, ImageNet-1k head"

_BUILTIN = (
    LayerModel("transformer-base", "transformer", 12, 512, 1024, "tokens", "lm", vocab_size=37000,
               generative=True, source=_VASWANI),
    LayerModel("bert-base", "bert", 12, 768, 512, "tokens", "classifier", vocab_size=30522, num_classes=2,
               pooler=True, source=_BERT + "; base: L 12, H 768, A 12; 2-class head assumed"),
    LayerModel("bert-large", "bert", 24, 1024, 512, "tokens", "classifier", vocab_size=30522, num_classes=2,
               pooler=True, source=_BERT + "; large: L 24, H 1024, A 16; 2-class head assumed"),
    LayerModel("gpt2-small", "gpt2", 12, 768, 1024, "tokens", "lm", vocab_size=50257, generative=True,
               source=_GPT2 + "; 117M: 12 layers, d 768"),
    LayerModel("gpt2-medium", "gpt2", 24, 1024, 1024, "tokens", "lm", vocab_size=50257, generative=True,
               source=_GPT2 + "; 345M: 24 layers, d 1024"),
    LayerModel("gpt2-large", "gpt2", 36, 1280, 1024, "tokens", "lm", vocab_size=50257, generative=True,
               source=_GPT2 + "; 762M: 36 layers, d 1280"),
    LayerModel("gpt2-xl", "gpt2", 48, 1600, 1024, "tokens", "lm", vocab_size=50257, generative=True,
               source=_GPT2 + "; 1542M: 48 layers, d 1600"),
    LayerModel("vit-b-16", "vit", 12, 768, 577, "patches", "classifier", num_classes=1000, patch_size=16,
               source=_VIT + "; Base: 12 layers, hidden 768, 12 heads"),
    LayerModel("vit-l-16", "vit", 24, 1024, 577, "patches", "classifier", num_classes=1000, patch_size=16,
               source=_VIT + "; Large: 24 layers, hidden 1024, 16 heads"),
)

LAYER_MODELS: Mapping[str, LayerModel] = MappingProxyType({m.name: m for m in _BUILTIN})


def layer_model_from_spec(spec: ModelSpec) -> LayerModel:
    """The block chain of a catalog (PETALS-style) model: no embedding / head layers (the PETALS client
    runs them), dense FLOPs per token per block = 2 × parameters per block, weights ``spec.block_bytes``."""
    return LayerModel(
        name=spec.name, family="petals", num_blocks=spec.num_blocks, d_model=spec.d_model,
        max_sequence_tokens=spec.max_sequence_tokens, embed=None, head=None, generative=True,
        dense_flops_per_token=spec.flops_per_token_per_block, block_weight_bytes=spec.block_bytes,
        source=f"block model from the core catalog ({spec.source})",
    )


def layer_model_names() -> tuple[str, ...]:
    """Names of the built-in layer models (catalog block models are found by their own names)."""
    return tuple(LAYER_MODELS)


def get_layer_model(name: str, catalog=None, path: str = "model") -> LayerModel:
    """A layer model by name: the built-in list first, then the block models of ``catalog`` (a
    :class:`~distllm_env.catalog.Catalog`, default the built-in one).

    Raises:
        ScenarioError: (path ``path``) ``name`` is not a known layer model."""
    if name in LAYER_MODELS:
        return LAYER_MODELS[name]
    if catalog is None:
        from ..catalog import default_catalog

        catalog = default_catalog()
    if name in catalog.models:
        return layer_model_from_spec(catalog.models[name])
    raise ScenarioError(path, f"unknown layer model {name!r}; expected one of "
                              f"{sorted(set(LAYER_MODELS) | set(catalog.models))}")


__all__ = ["LAYER_MODELS", "LayerCosts", "LayerModel", "get_layer_model", "layer_model_from_spec",
           "layer_model_names"]
