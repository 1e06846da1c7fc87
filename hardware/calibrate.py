"""PAPI's offline alpha calibration [P]: run the FC kernels on both units over a sweep of
parallelism (RLP x TLP) and take the crossover.

alpha is the largest RLP x TLP at which FC-PIM is at least as fast as the GPU; the rule then
places FC on the GPU when RLP x TLP > alpha (:func:`fc_on_gpu`, the one place that test is
written). Which objective a rule calibrates for is :func:`calibration_objective`'s choice.

    python -m hardware.calibrate                       # every preset model on PAPI
    python -m hardware.calibrate --model llama-65b --system my_h100.json
"""

from __future__ import annotations

import argparse
import math
import sys

import numpy as np

from hardware.models import MODEL_PRESETS
from hardware.specs import SpecError, load_system, override
from hardware.systems import CostModel

PAPER_MODELS = ("llama-65b", "gpt3-66b", "gpt3-175b")
CALIBRATION_MAX_TOKENS = 1024
"""Largest RLP x TLP the offline sweep tries [D]: 4x the largest static batch the envs allow (256),
so a crossover within any batch x TLP (up to 64 x 16) is found; the paper gives no range."""
OBJECTIVES = ("latency", "energy", "edp")
CALIBRATED_FOR = {"latency_target": "latency", "goodput": "latency"}
"""Objectives with no crossover of their own: a latency target and goodput are met by speed."""


def calibration_objective(reward: str) -> str:
    """The offline crossover a rule uses for an env's objective (``reward``): its own, or latency's
    for latency_target and goodput."""
    return CALIBRATED_FOR.get(reward, reward)


def fc_on_gpu(rlp, tlp, alpha):
    """PAPI's online characterizer [P]: FC on the GPU iff RLP x TLP > alpha, else on FC-PIM.
    Numbers give a bool, arrays a bool array."""
    return rlp * tlp > alpha


def fc_sweep(cost_model: CostModel, max_tokens: int = CALIBRATION_MAX_TOKENS) -> list[tuple[int, float, float]]:
    """(RLP x TLP, FC seconds on FC-PIM, FC seconds on GPU) for 1..max_tokens."""
    return [(r, cost_model.fc(r, "pim").time, cost_model.fc(r, "gpu").time) for r in range(1, max_tokens + 1)]



def _measure(cost_model: CostModel, tokens: int, unit: str, objective: str, kernel: str | None) -> float:
    c = cost_model.fc(tokens, unit) if kernel is None else cost_model.fc_kernel(kernel, tokens, unit)
    return {"latency": c.time, "energy": c.energy, "edp": c.time * c.energy}[objective]


def calibrate_alpha(cost_model: CostModel, max_tokens: int = CALIBRATION_MAX_TOKENS, objective: str = "latency",
                    kernel: str | None = None) -> int:
    """The crossover: largest RLP x TLP before the GPU first beats FC-PIM on the FC kernels.

    ``objective`` 'latency' (the paper's alpha), 'energy' or 'edp' (time x energy of the FC
    kernels) extends the calibration to the other objectives; ``kernel`` calibrates one FC kernel
    ('qkv', 'proj', 'ffn') instead of all of them.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    for unit in ("pim", "gpu"):
        if unit not in cost_model.fc_units:
            raise ValueError(
                f"system '{cost_model.system.name}' cannot run FC on {unit!r}; calibration needs both "
                "units (use a system with fc_units ['pim', 'gpu'], e.g. 'papi')"
            )
    for r in range(1, max_tokens + 1):
        if _measure(cost_model, r, "gpu", objective, kernel) < _measure(cost_model, r, "pim", objective, kernel):
            return r - 1
    return max_tokens


def with_power_budget(system_name: str = "papi", power_budget: bool = True):
    """The system with FC-PIM's MACs spaced for the HBM power budget (6 tCK, every preset's
    default) or, with ``power_budget=False``, at the unconstrained 4 tCK."""
    return override(load_system(system_name), {"fc_pim": {"power_budget": power_budget}})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Calibrate PAPI's alpha (FC-PIM/GPU crossover).")
    parser.add_argument("--model", action="append", help="model preset or file (repeatable)")
    parser.add_argument("--system", default="papi", help="system preset or JSON/YAML file")
    parser.add_argument("--max-tokens", type=int, default=CALIBRATION_MAX_TOKENS)
    args = parser.parse_args(argv)
    if args.max_tokens < 1:
        parser.error("--max-tokens must be a positive integer (the largest RLP x TLP to sweep)")
    models = args.model or list(PAPER_MODELS)
    try:
        system = load_system(args.system)
        budget = None
        if system.fc_pim is not None:
            budget = override(system, {"fc_pim": {"power_budget": not system.fc_pim.power_budget}})
        other_label = "alpha, power budget " + ("off" if system.fc_pim and system.fc_pim.power_budget else "on")
        print(f"system: {system.name} ({system.description})")
        print(f"{'model':<12} {'alpha':>6} {other_label:>26}")
        for name in models:
            alpha = calibrate_alpha(CostModel(system, name), args.max_tokens)
            other = calibrate_alpha(CostModel(budget, name), args.max_tokens) if budget else "-"
            print(f"{name:<12} {alpha:>6} {other:>26}")
    except (SpecError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

__all__ = ["CALIBRATION_MAX_TOKENS", "MODEL_PRESETS", "OBJECTIVES", "calibrate_alpha", "calibration_objective",
           "fc_on_gpu", "fc_sweep", "with_power_budget"]


# ----------------------------------------------------------------- the hardware descriptor
DESCRIPTOR = (
    ("alpha_latency", "log2(alpha + 1) / 12 of PAPI's FC crossover calibrated for latency"),
    ("alpha_energy", "log2(alpha + 1) / 12, calibrated for energy"),
    ("alpha_edp", "log2(alpha + 1) / 12, calibrated for EDP"),
    ("fc_time_pim_over_gpu", "0.5 + log2(FC seconds on FC-PIM / on the GPUs) / 16, at RLP x TLP = 1"),
    ("fc_energy_pim_over_gpu", "0.5 + log2(FC joules on FC-PIM / on the GPUs) / 16, at RLP x TLP = 1"),
    ("attention_over_fc", "0.5 + log2(attention seconds of one request at 4,096 tokens of context / FC "
                          "seconds on the GPUs at RLP x TLP = 1) / 16"),
    ("kv_headroom", "log2(1 + KV capacity / the KV cache of 64 requests of 2,048 tokens) / 4"),
    ("model_size", "log2(weight bytes / 1 GB) / 12"),
)
"""What a runtime can know offline about its own system and model (one profiling run and PAPI's
calibration, no episode's hidden state), each feature normalised to [0, 1] (clipped): the
``hardware_features=True`` observation of the environments. [D]: the reference points (RLP x TLP
= 1, 4,096-token contexts, 64 requests of 2,048 tokens) are of the order of the environments' own
scales (papi_env.core), and the scales keep the presets and the population inside [0, 1]."""
DESCRIPTOR_SIZE = len(DESCRIPTOR)
_DESCRIPTORS: dict[tuple, np.ndarray] = {}


def descriptor(cost_model: CostModel) -> np.ndarray:
    """(DESCRIPTOR_SIZE,) float64 in [0, 1]: the system and model as DESCRIPTOR lists them (cached
    per (system, model)). A system that cannot run FC on both units gets alpha features 0 (FC-PIM
    never chosen) or 1 (always), and ratio features of 0.5."""
    key = (cost_model.system, cost_model.model)
    if key not in _DESCRIPTORS:
        both = {"pim", "gpu"} <= set(cost_model.fc_units)
        alphas = [calibrate_alpha(cost_model, CALIBRATION_MAX_TOKENS, o) if both else 0 for o in OBJECTIVES]
        features = [math.log2(a + 1.0) / 12 for a in alphas]
        if both:
            pim, gpu = cost_model.fc(1, "pim"), cost_model.fc(1, "gpu")
            features += [0.5 + math.log2(pim.time / gpu.time) / 16, 0.5 + math.log2(pim.energy / gpu.energy) / 16]
        else:
            features += [0.5, 0.5]
        fc_ref = cost_model.fc(1, cost_model.fc_units[-1]).time
        features.append(0.5 + math.log2(cost_model.attention(1, 1, 4096.0).time / fc_ref) / 16)
        kv_ref = 64 * 2048 * cost_model.model.kv_bytes_per_token
        features.append(math.log2(1.0 + cost_model.kv_capacity_bytes / kv_ref) / 4)
        features.append(math.log2(cost_model.model.weight_bytes / 1e9) / 12)
        _DESCRIPTORS[key] = np.clip(np.array(features), 0.0, 1.0)
    return _DESCRIPTORS[key]
