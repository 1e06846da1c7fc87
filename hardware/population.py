"""A population of PAPI-like systems and LLMs, drawn from a seed: what a scheduler that must
transfer is trained and tested on.

Every member is a (system, model) pair around the presets, in PAPI's organisation (GPUs that run FC
and prefill, FC-PIM stacks for the weights, Attn-PIM stacks for the KV cache behind a link), with
the system given as an override of the ``papi`` preset (hardware.specs.override) and the model as
ModelSpec fields. A draw is kept only if CostModel accepts it (the weights fit the FC stacks and
the GPUs; every capacity check), so every member can be simulated.

What varies (``TRAIN_BOUNDS``; [D] ranges around the presets, A100 to H100-class and 4 to 8 GPUs,
FC-PIM's 2P1B..4P1B and HBM3 timing around AttAcc's): the GPUs' dense FP16 FLOP/s, HBM bandwidth
and count; the FC and attention stack counts; FC-PIM's PUs per bank and its clock (tCK); the
attention link's kind and count; the model's layers, hidden size, heads (head size 128), grouped
KV heads and FFN kind and size; and the GPUs' free HBM beside the weights.

**Free HBM**: in PAPI's organisation the FC-PIM stacks are the GPUs' HBM [P]; what is left of it
beside the weights (where PapiKernelSchedule-v0 mirrors the KV cache for attention on the GPUs) is
drawn as a fraction of the weight bytes (``spare_hbm``, log-uniform; PAPI's own builds have 3%,
GPT-3 175B, and 180%, LLaMA-65B), capped by the stacks' capacity. So the population runs from
builds with nearly no room to ample room, as deployments do; a draw with a fixed per-GPU memory
would almost never be short of it, and an agent would never see a full GPU in training.

**The held-out split is a rule**, not a sample: training never draws a GPU above
``HELD_OUT_GPU_FLOPS`` (H100-class compute) nor a model wider than ``HELD_OUT_HIDDEN`` (GPT-3
175B-class); the held-out split draws only such members. ``NAMED_TARGETS`` adds GPT-3 175B on PAPI
with H100 GPUs and the two hand-written systems of ``experiments/configs/systems/`` (docs/MODEL.md
describes them).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hardware.models import get_model
from hardware.specs import GB, PIM_PRESETS, SpecError
from hardware.systems import CapacityError, CostModel

SPLITS = ("train", "held_out")
HELD_OUT_GPU_FLOPS = 700e12  # [D] dense FP16 FLOP/s above this (H100-class) only in the held-out split
HELD_OUT_HIDDEN = 10240  # [D] hidden sizes above this (GPT-3 175B-class) only in the held-out split
MAX_ATTEMPTS = 200  # draws tried per member before giving up (a draw that fails a capacity check is redrawn)
SYSTEMS_DIR = Path(__file__).resolve().parent.parent / "experiments" / "configs" / "systems"
NAMED_TARGETS = {
    "gpt3-175b on papi-h100": ({"base": "papi", "gpu": "H100"}, "gpt3-175b"),
    "llama-65b on papi-pcie4-8gpu": (str(SYSTEMS_DIR / "papi_pcie4_8gpu.yaml"), "llama-65b"),
    "gpt3-66b on papi-h100x4-2p1b": (str(SYSTEMS_DIR / "papi_h100x4_2p1b.yaml"), "gpt3-66b"),
}
"""The named held-out targets: (system, model) as the environments take them."""


@dataclass(frozen=True)
class Bounds:
    """Ranges of one split's draws (see the module docstring)."""

    gpu_flops: tuple[float, float]  # dense FP16 FLOP/s
    gpu_bandwidth: tuple[float, float]  # B/s
    num_gpus: tuple[int, ...]
    fc_stacks: tuple[int, int]
    spare_hbm: tuple[float, float]  # the GPUs' HBM beside the weights, over the weight bytes
    attention_stacks: tuple[int, int]
    fc_pus_per_bank: tuple[float, ...]
    tck_s: tuple[float, float]  # HBM clock period of the PIM stacks
    links: tuple[str, ...]  # hardware.specs.LINK_PRESETS names
    layers: tuple[int, int]
    hidden: tuple[int, int]  # multiples of 1024


TRAIN_BOUNDS = Bounds(gpu_flops=(150e12, HELD_OUT_GPU_FLOPS), gpu_bandwidth=(1600 * GB, 3400 * GB),
                      num_gpus=(4, 6, 8), fc_stacks=(20, 40), spare_hbm=(0.01, 2.0), attention_stacks=(40, 80),
                      fc_pus_per_bank=(2.0, 4.0), tck_s=(0.625e-9, 0.9e-9), links=("pcie4", "pcie5", "cxl"),
                      layers=(32, 96), hidden=(4096, HELD_OUT_HIDDEN))
HELD_OUT_BOUNDS = Bounds(gpu_flops=(HELD_OUT_GPU_FLOPS, 1200e12), gpu_bandwidth=(2400 * GB, 4000 * GB),
                         num_gpus=(4, 6, 8), fc_stacks=(24, 40), spare_hbm=(0.01, 2.0),
                         attention_stacks=(48, 80),
                         fc_pus_per_bank=(2.0, 4.0), tck_s=(0.625e-9, 0.9e-9), links=("pcie4", "pcie5", "cxl"),
                         layers=(48, 96), hidden=(HELD_OUT_HIDDEN + 1024, 12288))


@dataclass(frozen=True)
class Member:
    """One (system, model) of the population, as the environments' ``system`` and ``model`` take them."""

    name: str
    system: dict[str, Any]
    model: dict[str, Any]

    def cost_model(self) -> CostModel:
        return CostModel(self.system, self.model)


def _between(rng: np.random.Generator, low: float, high: float) -> float:
    """Log-uniform in [low, high] (scales, not offsets, vary between machines)."""
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def draw_system(rng: np.random.Generator, bounds: Bounds) -> dict[str, Any]:
    """A system override of the ``papi`` preset within ``bounds`` (its GPU memory: with_free_hbm)."""
    num_gpus = int(rng.choice(bounds.num_gpus))
    tck = float(rng.uniform(*bounds.tck_s))
    return {
        "base": "papi",
        "name": "drawn",
        "gpu": {"name": "drawn", "peak_flops": _between(rng, *bounds.gpu_flops),
                "memory_bandwidth": _between(rng, *bounds.gpu_bandwidth)},
        "num_gpus": num_gpus,
        "fc_stacks": int(rng.integers(bounds.fc_stacks[0], bounds.fc_stacks[1] + 1)),
        "attention_stacks": int(rng.integers(bounds.attention_stacks[0], bounds.attention_stacks[1] + 1)),
        "fc_pim": {"pus_per_bank": float(rng.choice(bounds.fc_pus_per_bank)), "stack": {"tck_s": tck}},
        "attention_pim": {"stack": {"tck_s": tck}},
        "attention_link": str(rng.choice(bounds.links)),
        "attention_links": num_gpus,
    }


def with_free_hbm(system: dict[str, Any], weight_bytes: float, spare: float) -> dict[str, Any]:
    """``system`` with each GPU's memory set so that the GPUs hold ``weight_bytes`` and ``spare``
    times as much beside them, at most their FC-PIM stacks' capacity (the GPUs' HBM in PAPI)."""
    hbm = min(weight_bytes * (1.0 + spare), system["fc_stacks"] * PIM_PRESETS["fc_pim"].capacity_bytes)
    return {**system, "gpu": {**system["gpu"], "memory_capacity": hbm / system["num_gpus"]}}


def draw_model(rng: np.random.Generator, bounds: Bounds) -> dict[str, Any]:
    """ModelSpec fields within ``bounds``: head size 128, grouped KV heads or not, GELU (4 x
    hidden) or SwiGLU (8/3 x hidden, rounded to 256) feed-forward."""
    hidden = 1024 * int(rng.integers(bounds.hidden[0] // 1024, bounds.hidden[1] // 1024 + 1))
    heads = hidden // 128
    kv_heads = heads if rng.random() < 0.5 else max(1, heads // 8)
    swiglu = bool(rng.random() < 0.5)
    ffn = 256 * round(8 * hidden / 3 / 256) if swiglu else 4 * hidden
    return {"name": "drawn", "layers": int(rng.integers(bounds.layers[0], bounds.layers[1] + 1)),
            "hidden": hidden, "heads": heads, "kv_heads": kv_heads, "ffn": ffn,
            "ffn_kind": "swiglu" if swiglu else "gelu"}


def cost_models_of(population: Any) -> list[CostModel]:
    """The cost models of an environment's ``population`` option: a non-empty list of [system,
    model] pairs (as Member.system and Member.model, or preset names); ValueError otherwise."""
    pairs = list(population) if isinstance(population, (list, tuple)) else None
    if not pairs or any(not isinstance(pair, (list, tuple)) or len(pair) != 2 for pair in pairs):
        raise ValueError(f"population must be a non-empty list of [system, model] pairs, got {population!r}")
    return [CostModel(s, m) for s, m in pairs]


def in_split(member: Member, split: str) -> bool:
    """Whether ``member`` belongs to ``split`` by the held-out rule."""
    cm = member.cost_model()
    held_out = cm.system.gpu.peak_flops > HELD_OUT_GPU_FLOPS or cm.model.hidden > HELD_OUT_HIDDEN
    return held_out if split == "held_out" else not held_out


def population(seed: int, size: int, split: str = "train") -> list[Member]:
    """``size`` members of ``split`` drawn from ``seed`` (the same seed, the same members); each
    passes CostModel's capacity checks and the split's rule."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"size must be a positive integer, got {size!r}")
    bounds = TRAIN_BOUNDS if split == "train" else HELD_OUT_BOUNDS
    rng = np.random.default_rng([seed, SPLITS.index(split)])
    spare_rng = np.random.default_rng([seed, SPLITS.index(split), 1])
    members: list[Member] = []
    for _ in range(size):
        for _attempt in range(MAX_ATTEMPTS):
            system = draw_system(rng, bounds)
            model = draw_model(rng, bounds)
            member = Member(f"{split}-{len(members)}", system, {**model, "name": f"{split}-{len(members)}-model"})
            try:
                if in_split(member, split):  # free HBM from a stream of its own: the other draws as before
                    spare = _between(spare_rng, *bounds.spare_hbm)
                    members.append(Member(member.name, with_free_hbm(system, get_model(model).weight_bytes, spare),
                                          member.model))
                    break
            except (CapacityError, SpecError):
                continue
        else:
            raise RuntimeError(f"no valid {split} member in {MAX_ATTEMPTS} draws: the bounds are too tight")
    return members


def named_targets() -> list[Member]:
    """The named held-out targets (NAMED_TARGETS), each checked by CostModel."""
    out = []
    for name, (system, model) in NAMED_TARGETS.items():
        member = Member(name, system, model)  # type: ignore[arg-type]
        member.cost_model()
        out.append(member)
    return out
