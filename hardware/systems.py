"""The cost of one decoding iteration of a model on a system, split into FC, attention,
communication and other (layer norms, activations).

One iteration decodes ``tlp`` tokens for each of ``rlp`` live requests through every layer:
QKV generation, attention over each request's own context, output projection, FFN [P]. The FC
kernels run where the placement says; attention runs on the system's attention unit.
Results are cached per (RLP, TLP) and per (tokens, unit): the environments call this every step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from hardware import costs
from hardware.costs import ZERO, Cost
from hardware.models import ModelSpec, get_model
from hardware.specs import FC_UNITS, GB, SpecError, SystemSpec, load_system

FC_KERNELS = ("qkv", "proj", "ffn")
SPLIT_STEPS = 64  # [D] FC split fractions are rounded to 1/64 of a kernel's weights (tile granularity)
PREFILL_TERMS = 7  # numbers in CostModel.prefill_terms


def prefill_from_terms(terms: np.ndarray, causal: float, reread: float = 0.0) -> tuple[float, float]:
    """(s, J) of a GPU prefill from its CostModel.prefill_terms and its causal sum
    sum_i l_i (l_i + 1) / 2 over the prompts: the attention takes the longer of streaming the KV
    and its causal MACs (a roofline), everything else is fixed by the token count. A chunk of a
    longer prompt (chunked prefill) also attends to the context computed before it: ``reread``
    tokens of earlier KV that its attention streams again, and its causal sum counts those
    keys (sum over the chunk's tokens of their positions in the prompt). Plain float arithmetic,
    so the serving kernels compile this same function (sim.serve_kernels)."""
    return terms[0] + max(terms[2] * causal, terms[1] + terms[5] * reread), terms[3] + terms[4] * causal + \
        terms[6] * reread


class CapacityError(SpecError):
    """A model or a batch that does not fit the system's memory."""


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
        if self.model.weight_bytes > self.weight_capacity_bytes:
            raise CapacityError(
                f"model {self.model.name!r} needs {self.model.weight_bytes / GB:,.0f} GB of weights; system "
                f"'{self.system.name}' holds {self.weight_capacity_bytes / GB:,.0f} GB ({self._weight_memory})")
        self.fc_units = self.system.fc_units
        self._fc: dict[tuple[str, int, str], Cost] = {}
        self._fc_total: dict[tuple[int, str], Cost] = {}
        self._fixed: dict[tuple[int, int, str], tuple[Cost, Cost, Cost, Cost]] = {}
        self._split: dict[tuple[str, int, int], Cost] = {}

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

    def fused_fc_saving(self, decode_tokens: int, chunk_tokens: int) -> Cost:
        """What fusing a decoding iteration's FC kernels with a prompt chunk's on the GPUs saves
        (chunked prefill, Sarathi-Serve): the product of ``decode_tokens`` + ``chunk_tokens`` rows
        reads each weight once instead of twice, fc(d) + fc(c) - fc(d + c) on the GPUs. [D]"""
        d, c, both = self.fc(decode_tokens, "gpu"), self.fc(chunk_tokens, "gpu"), self.fc(decode_tokens + chunk_tokens,
                                                                                          "gpu")
        return Cost(d.time + c.time - both.time, d.energy + c.energy - both.energy)

    def _attention_one_layer(self, rlp: int, tlp: int, sum_ctx: float, unit: str) -> Cost:
        sysm, m = self.system, self.model
        b = m.bytes_per_value
        kv_bytes = sum_ctx * 2.0 * m.kv_dim * b
        reuse = tlp * m.gqa_group
        queries = rlp * tlp
        scores = float(tlp) * m.heads * sum_ctx
        if unit == "gpu":
            g = sysm.num_gpus
            macs = kv_bytes / b * reuse
            c = costs.gpu_streaming(kv_bytes / g + 2 * scores * b / g, macs / g, sysm.gpu, sysm.energy)
            return Cost(c.time, c.energy * g)
        s = sysm.attention_stacks
        qo_bytes = float(queries) * m.hidden * b / s  # queries in, outputs out, per stack
        attn = costs.pim_attention(
            ops=rlp * m.kv_heads,
            mean_context=sum_ctx / rlp,
            head_bytes_per_token=m.head_dim * b,
            reuse=reuse,
            num_stacks=s,
            pim=sysm.attention_pim,
            energy=sysm.energy,
        )
        io = Cost(2 * qo_bytes / sysm.attention_pim.stack.external_bandwidth,
                  2 * qo_bytes * s * sysm.energy.pim_io_pj_per_byte * costs.PJ)
        return attn + io

    def _communication_one_layer(self, rlp: int, tlp: int, attention_unit: str) -> Cost:
        """Tensor-parallel all-reduces (GPU systems only) and the FC side <-> attention transfers.

        With GPUs: AttAcc's NCCL ring all-reduce after the projection and after the FFN [A]. Without
        GPUs the FC stacks compute whole output columns (no partial sums to reduce) and gather them
        through their buffer dies, which :func:`costs.pim_kernel` charges as operand I/O [D]. Q/K/V go
        to the attention stacks and the attention output comes back over ``attention_links`` links
        in parallel, each carrying its share [P, A].
        """
        sysm, m = self.system, self.model
        b, tokens = m.bytes_per_value, rlp * tlp
        cost = ZERO
        if sysm.has_gpus:
            partial_sums = float(tokens) * m.hidden * b
            cost = costs.allreduce(partial_sums, sysm.num_gpus, sysm.gpu, sysm.energy).scaled(2)
        link, n = sysm.attention_link, sysm.attention_links
        if attention_unit == "pim":
            qkv = float(tokens) * (m.hidden + 2 * m.kv_dim) * b / n
            out = float(tokens) * m.hidden * b / n
            cost = cost + costs.link_transfer(qkv, n, link, sysm.energy)
            cost = cost + costs.link_transfer(out, n, link, sysm.energy)
        elif sysm.attention_unit == "pim":
            # Attention on the GPUs of a system whose KV cache lives on Attn-PIM: the GPUs read a
            # mirror of the KV cache in their own HBM, and the new K/V rows are still written to
            # Attn-PIM so that either unit can run the next iteration. [D]
            kv_new = float(tokens) * 2 * m.kv_dim * b / n
            cost = cost + costs.link_transfer(kv_new, n, link, sysm.energy)
        return cost

    def _other_one_layer(self, rlp: int, tlp: int) -> Cost:
        """Two layer norms and the FFN activation: on the GPUs (AttAcc's fits [A]) or, in a system
        without GPUs, on the FC stacks' buffer dies (:func:`costs.pim_vector`) [D]."""
        sysm, m = self.system, self.model
        b, en = m.bytes_per_value, sysm.energy
        x = float(rlp * tlp) * m.hidden
        operands, flops_per = (3, 9) if m.ffn_kind == "swiglu" else (2, 1 if m.ffn_kind == "relu" else 8)
        if sysm.vector_unit == "pim_buffer":
            f = float(rlp * tlp) * m.ffn
            nbytes = 2 * 3 * x * b + operands * f * b
            return costs.pim_vector(nbytes, 2 * 5 * x + flops_per * f, sysm.fc_stacks, sysm.fc_pim, en)
        g, gpu = sysm.num_gpus, sysm.gpu
        norm = costs.gpu_fitted_kernel(3 * x * b, 5 * x, gpu.norm_kernel_base_s, gpu.norm_kernel_s_per_byte, gpu, en)
        f = float(rlp * tlp) * math.ceil(m.ffn / g)
        act = costs.gpu_fitted_kernel(operands * f * b, flops_per * f, gpu.act_kernel_base_s,
                                      gpu.act_kernel_s_per_byte, gpu, en)
        per_gpu = norm.scaled(2) + act
        return Cost(per_gpu.time, per_gpu.energy * g)

    def _fixed_parts(self, rlp: int, tlp: int, attention_unit: str | None = None) -> tuple[Cost, Cost, Cost, Cost]:
        """(attention at zero context, attention per context token, communication, other)."""
        unit = attention_unit or self.system.attention_unit
        parts = self._fixed.get((rlp, tlp, unit))
        if parts is None:
            self._check_parallelism(rlp, tlp)
            if unit not in self.attention_units:
                raise ValueError(f"attention unit {unit!r} is not available on system '{self.system.name}'; "
                                 f"allowed: {list(self.attention_units)}")
            layers = self.model.layers
            a0 = self._attention_one_layer(rlp, tlp, 0.0, unit)
            a1 = self._attention_one_layer(rlp, tlp, 1.0, unit)
            per_ctx = Cost(a1.time - a0.time, a1.energy - a0.energy)  # attention is linear in context
            parts = (
                a0.scaled(layers),
                per_ctx.scaled(layers),
                self._communication_one_layer(rlp, tlp, unit).scaled(layers),
                self._other_one_layer(rlp, tlp).scaled(layers),
            )
            self._fixed[(rlp, tlp, unit)] = parts
        return parts

    @property
    def attention_units(self) -> tuple[str, ...]:
        """Where attention can run: the system's attention unit, and the GPUs as well."""
        return ("pim", "gpu") if self.system.attention_unit == "pim" else ("gpu",)

    def attention(self, rlp: int, tlp: int, sum_ctx: float, unit: str | None = None) -> Cost:
        """Attention of ``rlp`` requests whose contexts sum to ``sum_ctx`` tokens, all layers."""
        a0, a1, _, _ = self._fixed_parts(rlp, tlp, unit)
        return Cost(a0.time + a1.time * sum_ctx, a0.energy + a1.energy * sum_ctx)

    def communication(self, rlp: int, tlp: int, attention_unit: str | None = None) -> Cost:
        """All-reduces and Q/K/V/output transfers of one iteration, all layers."""
        return self._fixed_parts(rlp, tlp, attention_unit)[2]

    def other(self, rlp: int, tlp: int) -> Cost:
        """Layer norms and activations on the GPUs, all layers."""
        return self._fixed_parts(rlp, tlp)[3]

    # ------------------------------------------------------------------------------- iteration
    def iteration(self, rlp: int, tlp: int, sum_ctx: float, fc_unit: str | Sequence[str],
                  attention_unit: str | None = None) -> IterationCost:
        """One decoding iteration: ``rlp`` live requests, ``tlp`` tokens each.

        ``fc_unit`` is where every FC kernel runs ('pim' or 'gpu'), or one unit per kernel of
        FC_KERNELS; ``attention_unit`` defaults to the system's. ``sum_ctx`` is the total context
        (prompt + generated tokens) of the live requests.
        """
        if sum_ctx < 0:
            raise ValueError(f"sum_ctx must be >= 0 tokens, got {sum_ctx!r}")
        a0, a1, comm, other = self._fixed_parts(rlp, tlp, attention_unit)
        if isinstance(fc_unit, str):
            fc = self.fc(rlp * tlp, fc_unit)
        else:
            if len(fc_unit) != len(FC_KERNELS):
                raise ValueError(f"give one FC unit per kernel {FC_KERNELS}, got {fc_unit!r}")
            fc = ZERO
            for kernel, unit in zip(FC_KERNELS, fc_unit, strict=True):
                fc = fc + self.fc_kernel(kernel, rlp * tlp, unit)
        return self._assemble(fc, a0, a1, comm, other, sum_ctx)

    def iteration_split(self, rlp: int, tlp: int, sum_ctx: float, gpu_fractions: Sequence[float]) -> IterationCost:
        """One iteration with each FC kernel split between the GPUs and FC-PIM (see fc_split)."""
        if sum_ctx < 0:
            raise ValueError(f"sum_ctx must be >= 0 tokens, got {sum_ctx!r}")
        if len(gpu_fractions) != len(FC_KERNELS):
            raise ValueError(f"give one GPU fraction per kernel {FC_KERNELS}, got {gpu_fractions!r}")
        a0, a1, comm, other = self._fixed_parts(rlp, tlp)
        fc = ZERO
        for kernel, f in zip(FC_KERNELS, gpu_fractions, strict=True):
            fc = fc + self.fc_split(kernel, rlp * tlp, f)
        return self._assemble(fc, a0, a1, comm, other, sum_ctx)

    @staticmethod
    def _assemble(fc: Cost, a0: Cost, a1: Cost, comm: Cost, other: Cost, sum_ctx: float) -> IterationCost:
        return IterationCost(
            fc.time, a0.time + a1.time * sum_ctx, comm.time, other.time,
            fc.energy, a0.energy + a1.energy * sum_ctx, comm.energy, other.energy,
        )

    # ---------------------------------------------------------------------------- FC splitting
    def fc_split(self, kernel: str, tokens: int, gpu_fraction: float) -> Cost:
        """One FC kernel with ``gpu_fraction`` of its weights computed on the GPUs and the rest on
        FC-PIM at the same time, all layers. The fraction is rounded to 1/SPLIT_STEPS.

        Both units use the same HBM stacks (the GPUs' memory *is* the FC-PIM stacks [P]). A bank
        either serves the GPUs' reads or runs all-bank PIM commands, never both, so the stacks'
        bank time is shared: the GPUs occupy it for their memory-bound time ``M_g`` (their bytes at
        0.85 x bandwidth), FC-PIM for its whole kernel time ``t_p`` (MACs, activations, operand
        I/O). GPU arithmetic overlaps PIM work. Kernel time = max(t_g, M_g + t_p), where t_g is
        the GPUs' own time on their slice; energy is the sum of both parts. [D]
        """
        if not 0.0 <= gpu_fraction <= 1.0 or math.isnan(gpu_fraction):
            raise ValueError(f"gpu_fraction must be in [0, 1], got {gpu_fraction!r}")
        if kernel not in FC_KERNELS:
            raise ValueError(f"unknown FC kernel {kernel!r}; allowed: {list(FC_KERNELS)}")
        step = round(gpu_fraction * SPLIT_STEPS)
        key = (kernel, tokens, step)
        cost = self._split.get(key)
        if cost is None:
            if step == SPLIT_STEPS:
                cost = self.fc_kernel(kernel, tokens, "gpu")
            elif step == 0:
                cost = self.fc_kernel(kernel, tokens, "pim")
            else:
                self._check_unit("gpu")
                self._check_unit("pim")
                self._check_parallelism(tokens, 1)
                cost = self._fc_split_one_layer(kernel, tokens, step / SPLIT_STEPS).scaled(self.model.layers)
            self._split[key] = cost
        return cost

    def _fc_split_one_layer(self, kernel: str, tokens: int, f: float) -> Cost:
        sysm, m = self.system, self.model
        b, g, s = m.bytes_per_value, sysm.num_gpus, sysm.fc_stacks
        mats = m.fc_matrices()[kernel]
        gpu_time = gpu_mem_time = pim_time = energy = 0.0
        for i, (k_in, n_out) in enumerate(mats):
            row_split = kernel == "proj" or (kernel == "ffn" and i == len(mats) - 1)
            if row_split:  # the GPUs take a share of the rows (partial sums), FC-PIM the rest
                k_g = max(1, round(k_in * f))
                shape = (tokens, n_out, math.ceil(k_g / g))
                pim_shape = (k_in - k_g, n_out)
            else:  # the GPUs take a share of the output columns
                n_g = max(1, round(n_out * f))
                shape = (tokens, math.ceil(n_g / g), k_in)
                pim_shape = (k_in, n_out - n_g)
            c = costs.gpu_gemm(*shape, sysm.gpu, sysm.energy, b)
            mm, nn, kk = shape
            gpu_time += c.time
            gpu_mem_time += float(nn * kk + mm * kk + mm * nn) * b / (
                sysm.gpu.memory_bandwidth * sysm.gpu.bandwidth_efficiency)
            p = costs.pim_kernel(
                data_bytes=float(pim_shape[0]) * pim_shape[1] * b,
                reuse=tokens,
                in_bytes_per_stack=float(tokens) * pim_shape[0] * b,
                out_bytes_per_stack=float(tokens) * pim_shape[1] * b / s,
                num_stacks=s,
                pim=sysm.fc_pim,
                energy=sysm.energy,
            )
            pim_time += p.time
            energy += c.energy * g + p.energy
        return Cost(max(gpu_time, gpu_mem_time + pim_time), energy)

    def prefill(self, input_lengths: list[int]) -> Cost:
        """Prefill of a batch plus shipping its KV to the attention unit; reported separately from
        decoding, as in the paper.

        ``prefill_unit`` 'gpu': compute-bound on the GPUs [P], priced by :meth:`prefill_terms` and
        :func:`prefill_from_terms` (the one formula the serving kernels use too). 'pim' (systems
        without GPUs): every FC kernel on the FC stacks with all prompt tokens as reuse, causal
        attention on the attention stacks as one op per request and head with the prompt as both
        queries and half-context on average [D]. Either way far slower on PIM, which is why PAPI
        prefills on the GPUs.
        """
        sysm, m = self.system, self.model
        b = m.bytes_per_value
        lengths = [int(x) for x in input_lengths]
        tokens = sum(lengths)
        if tokens <= 0:
            return ZERO
        if sysm.prefill_unit == "gpu":
            causal = 0.0
            for length in lengths:
                causal += length * (length + 1) / 2
            return Cost(*prefill_from_terms(self.prefill_terms(tokens), causal))
        n = sysm.attention_links
        kv = tokens * 2.0 * m.kv_dim * b / n
        comm = costs.link_transfer(kv, n, sysm.attention_link, sysm.energy) if sysm.attention_unit == "pim" else ZERO
        fc = ZERO
        for kernel in FC_KERNELS:
            fc = fc + self._fc_kernel_one_layer(kernel, tokens, "pim")
        mean_len = tokens / len(lengths)
        attn = costs.pim_attention(len(lengths) * m.kv_heads, mean_len / 2, m.head_dim * b,
                                   math.ceil(mean_len) * m.gqa_group, sysm.attention_stacks,
                                   sysm.attention_pim, sysm.energy)
        return (fc + attn + comm + self._other_one_layer(tokens, 1)).scaled(m.layers)

    def prefill_terms(self, tokens: int) -> np.ndarray:
        """The GPU prefill of ``tokens`` prompt tokens (all layers) as PREFILL_TERMS numbers, which
        :func:`prefill_from_terms` turns into (s, J) given the batch's causal sum
        sum_i l_i (l_i + 1) / 2 (the only way the prompts' split into requests matters): fixed
        seconds (FC GEMMs, all-reduces, shipping the KV to Attn-PIM, norms and activation), the
        attention's streaming seconds, its seconds per causal unit (the two sides of the
        attention's roofline, costs.gpu_streaming), fixed joules, joules per causal unit, and the
        streaming seconds and joules per token of earlier context re-read (a prefill chunk's).
        Only for systems that prefill on GPUs."""
        sysm, m = self.system, self.model
        if sysm.prefill_unit != "gpu":
            raise SpecError(f"system '{sysm.name}' prefills in PIM; prefill_terms is the GPU prefill's form")
        b, g, layers = m.bytes_per_value, sysm.num_gpus, m.layers
        n = sysm.attention_links
        kv = tokens * 2.0 * m.kv_dim * b / n
        comm = costs.link_transfer(kv, n, sysm.attention_link, sysm.energy) if sysm.attention_unit == "pim" else ZERO
        fc = ZERO
        for mats in m.fc_matrices().values():
            for k_in, n_out in mats:
                c = costs.gpu_gemm(tokens, math.ceil(n_out / g), k_in, sysm.gpu, sysm.energy, b)
                fc = fc + Cost(c.time, c.energy * g)
        stream = costs.gpu_streaming(tokens * 2.0 * m.kv_dim * b / g, 0.0, sysm.gpu, sysm.energy)
        reread = costs.gpu_streaming(2.0 * m.kv_dim * b / g, 0.0, sysm.gpu, sysm.energy)  # per token
        per_causal = costs.gpu_streaming(0.0, m.hidden * 2 / g, sysm.gpu, sysm.energy)
        comm = comm + costs.allreduce(float(tokens) * m.hidden * b, g, sysm.gpu, sysm.energy).scaled(2)
        fixed = fc + comm + self._other_one_layer(tokens, 1)
        return np.array([layers * fixed.time, layers * stream.time, layers * per_causal.time,
                         layers * (fixed.energy + stream.energy * g), layers * per_causal.energy * g,
                         layers * reread.time, layers * reread.energy * g])

    @property
    def weight_capacity_bytes(self) -> float:
        """Memory for the FC weights, B: the FC-PIM stacks, or the GPUs' HBM without FC-PIM."""
        sysm = self.system
        if sysm.fc_pim is not None:
            return sysm.fc_stacks * sysm.fc_pim.capacity_bytes
        return sysm.num_gpus * sysm.gpu.memory_capacity

    @property
    def _weight_memory(self) -> str:
        sysm = self.system
        if sysm.fc_pim is not None:
            return f"{sysm.fc_stacks} FC stacks x {sysm.fc_pim.capacity_bytes / GB:g} GB"
        return f"{sysm.num_gpus} GPUs x {sysm.gpu.memory_capacity / GB:g} GB"

    def _kv_per_request(self, input_lengths: Sequence[int], output_lengths: Sequence[int]) -> np.ndarray:
        """Each request's KV cache at its full length (prompt + output), B."""
        tokens = np.asarray(input_lengths, dtype=np.float64) + np.asarray(output_lengths, dtype=np.float64)
        return tokens * self.model.kv_bytes_per_token

    def batch_kv_bytes(self, input_lengths: Sequence[int], output_lengths: Sequence[int]) -> float:
        """KV cache of a static batch at its peak, reserving every request's full length, B."""
        return float(self._kv_per_request(input_lengths, output_lengths).sum())

    def check_batch_fits(self, input_lengths: Sequence[int], output_lengths: Sequence[int]) -> None:
        """CapacityError when the batch's KV cache (batch_kv_bytes) exceeds kv_capacity_bytes."""
        need, have = self.batch_kv_bytes(input_lengths, output_lengths), self.kv_capacity_bytes
        if need > have:
            raise CapacityError(
                f"a batch of {len(input_lengths)} requests ({int(np.sum(input_lengths)):,} prompt + "
                f"{int(np.sum(output_lengths)):,} output tokens) needs {need / GB:,.1f} GB of KV cache for "
                f"{self.model.name}; system '{self.system.name}' holds {have / GB:,.1f} GB")

    def batch_prefix_that_fits(self, input_lengths: Sequence[int], output_lengths: Sequence[int]) -> int:
        """How many requests, in order, fit the KV capacity (at least one, else CapacityError)."""
        cumulative = np.cumsum(self._kv_per_request(input_lengths, output_lengths))
        fits = int(np.searchsorted(cumulative, self.kv_capacity_bytes, side="right"))
        if fits == 0:
            self.check_batch_fits(input_lengths[:1], output_lengths[:1])
        return fits

    @property
    def gpu_kv_capacity_bytes(self) -> float:
        """Room for a KV cache in the GPUs' own HBM beside the model's weights, B (>= 0)."""
        sysm = self.system
        return max(0.0, sysm.num_gpus * sysm.gpu.memory_capacity - self.model.weight_bytes)

    @property
    def kv_capacity_bytes(self) -> float:
        """KV-cache capacity of the attention stacks (or of the GPUs' memory), B."""
        sysm = self.system
        if sysm.attention_unit == "pim":
            return sysm.attention_stacks * sysm.attention_pim.capacity_bytes
        return sysm.num_gpus * sysm.gpu.memory_capacity - self.model.weight_bytes
