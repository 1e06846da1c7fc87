"""The cost of one decoding iteration of a model on a system, split into FC, attention,
communication and other (layer norms, activations).

One iteration decodes ``tlp`` tokens for each of ``rlp`` live requests through every layer:
QKV generation, attention over each request's own context, output projection, FFN [P]. The FC
kernels run where the placement says; attention runs on the system's attention unit.
Results are cached per (RLP, TLP) and per (tokens, unit): the environments call this every step.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from hardware import costs
from hardware.costs import ZERO, Cost
from hardware.models import ModelSpec, get_model
from hardware.specs import FC_UNITS, SystemSpec, load_system

FC_KERNELS = ("qkv", "proj", "ffn")


class IterationCost(NamedTuple):
    """Seconds and joules of one decoding iteration over all layers, by category."""

    fc_time: float
    attention_time: float
    comm_time: float
    other_time: float
    fc_energy: float
    attention_energy: float
    comm_energy: float
    other_energy: float

    @property
    def time(self) -> float:
        """Total seconds (the kernels of a layer run one after another)."""
        return self.fc_time + self.attention_time + self.comm_time + self.other_time

    @property
    def energy(self) -> float:
        """Total joules."""
        return self.fc_energy + self.attention_energy + self.comm_energy + self.other_energy


class CostModel:
    """Per-iteration time and energy of ``model`` decoding on ``system``."""

    def __init__(self, system: SystemSpec | str = "papi", model: ModelSpec | str = "llama-65b") -> None:
        self.system = load_system(system)
        self.model = get_model(model)
        self.fc_units = self.system.fc_units
        self._fc: dict[tuple[str, int, str], Cost] = {}
        self._fc_total: dict[tuple[int, str], Cost] = {}
        self._fixed: dict[tuple[int, int], tuple[Cost, Cost, Cost, Cost]] = {}

    # ----------------------------------------------------------------------------------- checks
    @staticmethod
    def _check_parallelism(rlp: int, tlp: int) -> None:
        for name, v in (("rlp", rlp), ("tlp", tlp)):
            if isinstance(v, bool) or not isinstance(v, (int,)) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")

    def _check_unit(self, unit: str) -> None:
        if unit not in self.fc_units:
            raise ValueError(
                f"FC unit {unit!r} is not available on system '{self.system.name}'; "
                f"allowed: {list(self.fc_units)} (of {list(FC_UNITS)})"
            )

    # --------------------------------------------------------------------------------- kernels
    def fc_kernel(self, kernel: str, tokens: int, unit: str) -> Cost:
        """One FC kernel ('qkv', 'proj', 'ffn') for ``tokens`` = RLP x TLP rows, all layers."""
        key = (kernel, tokens, unit)
        cost = self._fc.get(key)
        if cost is None:
            if kernel not in FC_KERNELS:
                raise ValueError(f"unknown FC kernel {kernel!r}; allowed: {list(FC_KERNELS)}")
            self._check_parallelism(tokens, 1)
            self._check_unit(unit)
            cost = self._fc_kernel_one_layer(kernel, tokens, unit).scaled(self.model.layers)
            self._fc[key] = cost
        return cost

    def _fc_kernel_one_layer(self, kernel: str, tokens: int, unit: str) -> Cost:
        sysm, m = self.system, self.model
        b = m.bytes_per_value
        mats = m.fc_matrices()[kernel]
        total = ZERO
        for i, (k_in, n_out) in enumerate(mats):
            # Tensor parallelism [A]: the projection and the FFN's last matrix are split by rows
            # (partial sums, all-reduced afterwards); the others by columns.
            row_split = kernel == "proj" or (kernel == "ffn" and i == len(mats) - 1)
            if unit == "gpu":
                g = sysm.num_gpus
                if row_split:
                    c = costs.gpu_gemm(tokens, n_out, math.ceil(k_in / g), sysm.gpu, sysm.energy, b)
                else:
                    c = costs.gpu_gemm(tokens, math.ceil(n_out / g), k_in, sysm.gpu, sysm.energy, b)
                total = total + Cost(c.time, c.energy * g)
            else:
                s = sysm.fc_stacks
                total = total + costs.pim_kernel(
                    data_bytes=float(k_in) * n_out * b,
                    reuse=tokens,
                    in_bytes_per_stack=float(tokens) * k_in * b,
                    out_bytes_per_stack=float(tokens) * n_out * b / s,
                    num_stacks=s,
                    pim=sysm.fc_pim,
                    energy=sysm.energy,
                )
        return total

    def fc(self, tokens: int, unit: str) -> Cost:
        """All FC kernels of an iteration on ``unit`` ('pim' = FC-PIM, 'gpu'), all layers."""
        key = (tokens, unit)
        cost = self._fc_total.get(key)
        if cost is None:
            cost = ZERO
            for kernel in FC_KERNELS:
                cost = cost + self.fc_kernel(kernel, tokens, unit)
            self._fc_total[key] = cost
        return cost

    def _attention_one_layer(self, rlp: int, tlp: int, sum_ctx: float) -> Cost:
        sysm, m = self.system, self.model
        b = m.bytes_per_value
        kv_bytes = sum_ctx * 2.0 * m.kv_dim * b
        reuse = tlp * m.gqa_group
        queries = rlp * tlp
        scores = float(tlp) * m.heads * sum_ctx
        if sysm.attention_unit == "gpu":
            g = sysm.num_gpus
            macs = kv_bytes / b * reuse
            c = costs.gpu_streaming(kv_bytes / g + 2 * scores * b / g, macs / g, sysm.gpu, sysm.energy)
            return Cost(c.time, c.energy * g)
        s = sysm.attention_stacks
        qo_bytes = float(queries) * m.hidden * b / s
        return costs.pim_kernel(
            kv_bytes, reuse, qo_bytes, qo_bytes, s, sysm.attention_pim, sysm.energy
        ) + costs.pim_softmax(scores, s, sysm.attention_pim, sysm.energy, b)

    def _communication_one_layer(self, rlp: int, tlp: int) -> Cost:
        sysm, m = self.system, self.model
        b, g, tokens = m.bytes_per_value, sysm.num_gpus, rlp * tlp
        partial_sums = float(tokens) * m.hidden * b
        cost = costs.allreduce(partial_sums, g, sysm.gpu, sysm.energy).scaled(2)  # after proj and FFN
        if sysm.attention_unit == "pim":
            qkv = float(tokens) * (m.hidden + 2 * m.kv_dim) * b / g
            out = float(tokens) * m.hidden * b / g
            link = sysm.attention_link
            cost = cost + costs.link_transfer(qkv, g, link, sysm.energy)
            cost = cost + costs.link_transfer(out, g, link, sysm.energy)
        return cost

    def _other_one_layer(self, rlp: int, tlp: int) -> Cost:
        sysm, m = self.system, self.model
        b, g, gpu, en = m.bytes_per_value, sysm.num_gpus, sysm.gpu, sysm.energy
        x = float(rlp * tlp) * m.hidden
        norm = costs.gpu_fitted_kernel(3 * x * b, 5 * x, gpu.norm_kernel_base_s, gpu.norm_kernel_s_per_byte, gpu, en)
        f = float(rlp * tlp) * math.ceil(m.ffn / g)
        operands, flops_per = (3, 9) if m.ffn_kind == "swiglu" else (2, 1 if m.ffn_kind == "relu" else 8)
        act = costs.gpu_fitted_kernel(operands * f * b, flops_per * f, gpu.act_kernel_base_s,
                                      gpu.act_kernel_s_per_byte, gpu, en)
        per_gpu = norm.scaled(2) + act
        return Cost(per_gpu.time, per_gpu.energy * g)

    def _fixed_parts(self, rlp: int, tlp: int) -> tuple[Cost, Cost, Cost, Cost]:
        """(attention at zero context, attention per context token, communication, other)."""
        parts = self._fixed.get((rlp, tlp))
        if parts is None:
            self._check_parallelism(rlp, tlp)
            layers = self.model.layers
            a0 = self._attention_one_layer(rlp, tlp, 0.0)
            a1 = self._attention_one_layer(rlp, tlp, 1.0)
            per_ctx = Cost(a1.time - a0.time, a1.energy - a0.energy)  # attention is linear in context
            parts = (
                a0.scaled(layers),
                per_ctx.scaled(layers),
                self._communication_one_layer(rlp, tlp).scaled(layers),
                self._other_one_layer(rlp, tlp).scaled(layers),
            )
            self._fixed[(rlp, tlp)] = parts
        return parts

    def attention(self, rlp: int, tlp: int, sum_ctx: float) -> Cost:
        """Attention of ``rlp`` requests whose contexts sum to ``sum_ctx`` tokens, all layers."""
        a0, a1, _, _ = self._fixed_parts(rlp, tlp)
        return Cost(a0.time + a1.time * sum_ctx, a0.energy + a1.energy * sum_ctx)

    def communication(self, rlp: int, tlp: int) -> Cost:
        """All-reduces and Q/K/V/output transfers of one iteration, all layers."""
        return self._fixed_parts(rlp, tlp)[2]

    def other(self, rlp: int, tlp: int) -> Cost:
        """Layer norms and activations on the GPUs, all layers."""
        return self._fixed_parts(rlp, tlp)[3]

    # ------------------------------------------------------------------------------- iteration
    def iteration(self, rlp: int, tlp: int, sum_ctx: float, fc_unit: str) -> IterationCost:
        """One decoding iteration: ``rlp`` live requests, ``tlp`` tokens each, FC on ``fc_unit``.

        ``sum_ctx`` is the total context (prompt + generated tokens) of the live requests.
        """
        if sum_ctx < 0:
            raise ValueError(f"sum_ctx must be >= 0 tokens, got {sum_ctx!r}")
        a0, a1, comm, other = self._fixed_parts(rlp, tlp)
        fc = self.fc(rlp * tlp, fc_unit)
        return IterationCost(
            fc.time, a0.time + a1.time * sum_ctx, comm.time, other.time,
            fc.energy, a0.energy + a1.energy * sum_ctx, comm.energy, other.energy,
        )

    def prefill(self, input_lengths: list[int]) -> Cost:
        """Prefill of a batch on the GPUs (compute-bound [P]) plus shipping its KV to attention.

        Reported separately from decoding, as in the paper.
        """
        sysm, m = self.system, self.model
        g, b = sysm.num_gpus, m.bytes_per_value
        tokens = int(sum(input_lengths))
        if tokens <= 0:
            return ZERO
        fc = ZERO
        for mats in m.fc_matrices().values():
            for k_in, n_out in mats:
                c = costs.gpu_gemm(tokens, math.ceil(n_out / g), k_in, sysm.gpu, sysm.energy, b)
                fc = fc + Cost(c.time, c.energy * g)
        causal_macs = sum(length * (length + 1) / 2 for length in input_lengths) * m.hidden * 2
        attn = costs.gpu_streaming(tokens * 2.0 * m.kv_dim * b / g, causal_macs / g, sysm.gpu, sysm.energy)
        comm = costs.allreduce(float(tokens) * m.hidden * b, g, sysm.gpu, sysm.energy).scaled(2)
        if sysm.attention_unit == "pim":
            kv = tokens * 2.0 * m.kv_dim * b / g
            comm = comm + costs.link_transfer(kv, g, sysm.attention_link, sysm.energy)
        per_layer = fc + Cost(attn.time, attn.energy * g) + comm + self._other_one_layer(tokens, 1)
        return per_layer.scaled(m.layers)

    @property
    def kv_capacity_bytes(self) -> float:
        """KV-cache capacity of the attention stacks (or of the GPUs' memory), B."""
        sysm = self.system
        if sysm.attention_unit == "pim":
            return sysm.attention_stacks * sysm.attention_pim.capacity_bytes
        return sysm.num_gpus * sysm.gpu.memory_capacity - self.model.weight_bytes
