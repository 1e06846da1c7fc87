"""LLM shapes (FP16) and the FC weight matrices of one decoder layer."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from hardware.specs import SpecError, read_mapping

FFN_KINDS = ("gelu", "relu", "swiglu")


@dataclass(frozen=True)
class ModelSpec:
    """A decoder-only transformer.

    ``ffn_kind`` 'swiglu' has three h x ffn matrices (gate, up, down); 'gelu'/'relu' have two.
    """

    name: str
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    ffn: int
    ffn_kind: str = "gelu"
    bytes_per_value: int = 2  # FP16 weights, activations and KV [P]

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("name", "ffn_kind"):
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise SpecError(f"model {self.name!r}: {f.name} must be a positive integer, got {value!r}")
        if self.ffn_kind not in FFN_KINDS:
            raise SpecError(f"model {self.name!r}: ffn_kind {self.ffn_kind!r} not in {FFN_KINDS}")
        if self.hidden % self.heads:
            raise SpecError(f"model {self.name!r}: hidden {self.hidden} not divisible by heads {self.heads}")
        if self.heads % self.kv_heads:
            raise SpecError(f"model {self.name!r}: heads {self.heads} not divisible by kv_heads {self.kv_heads}")

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def kv_dim(self) -> int:
        """Width of K (and of V) per token: kv_heads x head_dim."""
        return self.kv_heads * self.head_dim

    @property
    def gqa_group(self) -> int:
        """Query heads that share one KV head (1 without grouped-query attention)."""
        return self.heads // self.kv_heads

    def fc_matrices(self) -> dict[str, list[tuple[int, int]]]:
        """(in_features, out_features) of each FC kernel's weight matrices, per layer."""
        h = self.hidden
        ffn = [(h, self.ffn), (h, self.ffn), (self.ffn, h)] if self.ffn_kind == "swiglu" else [
            (h, self.ffn),
            (self.ffn, h),
        ]
        return {"qkv": [(h, h + 2 * self.kv_dim)], "proj": [(h, h)], "ffn": ffn}

    @property
    def fc_params_per_layer(self) -> int:
        return sum(k * n for mats in self.fc_matrices().values() for k, n in mats)

    @property
    def weight_bytes(self) -> float:
        """FC weight bytes of the whole model (embeddings excluded), B."""
        return self.layers * self.fc_params_per_layer * self.bytes_per_value

    @property
    def kv_bytes_per_token(self) -> float:
        """KV-cache bytes one token adds over all layers (K and V), B."""
        return self.layers * 2 * self.kv_dim * self.bytes_per_value


def fc_arithmetic_intensity(tokens: int, hidden: int) -> float:
    """FLOP/B of an h x h FP16 FC kernel on ``tokens`` = RLP x TLP input rows [P].

    FLOPs 2 R h^2 over bytes 2 (h^2 + 2 R h) (weights, inputs, outputs): R h / (h + 2 R).
    """
    return tokens * hidden / (hidden + 2 * tokens)


MODEL_PRESETS: dict[str, ModelSpec] = {
    # [P] LLaMA-65B: 80 layers, h 8192, 64 heads, SwiGLU FFN (the released checkpoint's 22016 =
    # 8/3 h rounded up to a multiple of 256).
    "llama-65b": ModelSpec("llama-65b", 80, 8192, 64, 64, 22016, "swiglu"),
    # [P] GPT-3 66B: the OPT-66B shape, 64 layers, h 9216, 72 heads, FFN 4h.
    "gpt3-66b": ModelSpec("gpt3-66b", 64, 9216, 72, 72, 4 * 9216, "relu"),
    # [P] GPT-3 175B: 96 layers, h 12288, 96 heads, FFN 4h.
    "gpt3-175b": ModelSpec("gpt3-175b", 96, 12288, 96, 96, 4 * 12288, "gelu"),
    # OPT-30B shape, used for the paper's arithmetic-intensity example [P].
    "opt-30b": ModelSpec("opt-30b", 48, 7168, 56, 56, 4 * 7168, "relu"),
    # Draft models for speculative decoding (PapiSpecSchedule-v0); not in the paper.
    # TinyLlama-1.1B (its released config.json): 22 layers, h 2048, 32 heads, 4 KV heads, SwiGLU 5632.
    "tinyllama-1.1b": ModelSpec("tinyllama-1.1b", 22, 2048, 32, 4, 5632, "swiglu"),
    # LLaMA-7B (Touvron et al. 2023, Table 2): 32 layers, h 4096, 32 heads, SwiGLU 11008.
    "llama-7b": ModelSpec("llama-7b", 32, 4096, 32, 32, 11008, "swiglu"),
}


def get_model(source: str | ModelSpec | dict[str, Any] | Path) -> ModelSpec:
    """A model by preset name, a ModelSpec, a dict of ModelSpec fields, or a JSON/YAML file."""
    if isinstance(source, ModelSpec):
        return source
    if isinstance(source, str) and source.lower() in MODEL_PRESETS:
        return MODEL_PRESETS[source.lower()]
    if isinstance(source, (str, Path)):
        if not Path(source).suffix:
            raise SpecError(f"unknown model {source!r}; allowed: {sorted(MODEL_PRESETS)} or a .json/.yaml file")
        source = read_mapping(source)
    if not isinstance(source, dict):
        raise SpecError(f"a model is a preset name, a mapping or a file, got {type(source).__name__}")
    allowed = {f.name for f in fields(ModelSpec)}
    unknown = set(source) - allowed
    if unknown:
        raise SpecError(f"unknown model field(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    data = dict(source)
    data.setdefault("name", "custom")
    data.setdefault("kv_heads", data.get("heads"))
    missing = {"layers", "hidden", "heads", "ffn"} - set(data)
    if missing:
        raise SpecError(f"model {data['name']!r} is missing field(s) {sorted(missing)}")
    return ModelSpec(**data)
