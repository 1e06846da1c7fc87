"""Cost of one kernel on one unit: seconds and joules. Pure functions of the specs.

Units throughout: seconds, bytes, FLOPs (2 per multiply-accumulate), joules. Energy tables are in
pJ and converted here (1 pJ = 1e-12 J). The modelling assumptions are collected in
docs/MODEL.md; the tags [A]/[P]/[D] refer to hardware/specs.py.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import NamedTuple

from hardware.specs import EnergySpec, GPUSpec, LinkSpec, PIMSpec

PJ = 1e-12  # J per pJ
SCORE_BYTES = 2  # [A] attention scores are FP16 on the buffer die
_TILE_SIZES = (8, 16, 32, 64, 128, 192, 256, 320, 384, 448, 512)  # [A] AttAcc's tile search range
_TILE_K = 32  # [A] L1 tile depth
_REG_TILE = 16  # [A] register tile (16 x 16)
_L2_TILE = 128  # [D] canonical L1 tile edge used for L2-traffic energy


class Cost(NamedTuple):
    """Time (s) and energy (J) of one kernel (or a sum of kernels)."""

    time: float
    energy: float

    def __add__(self, other):  # type: ignore[override]
        return Cost(self.time + other.time, self.energy + other.energy)

    def scaled(self, k: float) -> Cost:
        return Cost(self.time * k, self.energy * k)


ZERO = Cost(0.0, 0.0)


def _sm_utilisation(blocks: int, sms: int) -> float:
    """Fraction of SM slots busy when ``blocks`` thread blocks run in waves of ``sms``. [A]"""
    return blocks / (math.ceil(blocks / sms) * sms)


@lru_cache(maxsize=65536)
def _tile_choice(m: int, n: int, gpu: GPUSpec, bytes_per_value: int) -> tuple[int, int, float]:
    """L1 tile for an m x n output: highest SM utilisation, then least L2 traffic. [D from A]

    AttAcc searches the same tile sizes under the same L1 capacity; we rank by utilisation first
    because a GEMM library picks the fastest configuration. Returns (tile_m, tile_n, utilisation).
    """
    best = (0, 0, 0.0)
    best_key = (-1.0, math.inf)
    for tm in _TILE_SIZES:
        for tn in _TILE_SIZES:
            tm_, tn_ = min(tm, m), min(tn, n)
            need = ((tm_ + tn_) * _TILE_K + tm_ * tn_) * bytes_per_value
            if need > gpu.l1_bytes_per_sm:
                continue
            util = _sm_utilisation(math.ceil(m / tm_) * math.ceil(n / tn_), gpu.num_sms)
            traffic = math.ceil(n / tn_) * m + math.ceil(m / tm_) * n  # x k x bytes, common factor
            key = (round(util, 9), -traffic)
            if key > (best_key[0], -best_key[1]):
                best_key, best = (key[0], traffic), (tm_, tn_, util)
    return best


def _gpu_gemm_time(m: int, n: int, k: int, gpu: GPUSpec, bytes_per_value: int) -> float:
    _, _, util = _tile_choice(m, n, gpu, bytes_per_value)
    flops = 2.0 * m * n * k
    offchip = float(n * k + m * k + m * n) * bytes_per_value
    return max(
        flops / (gpu.peak_flops * gpu.compute_efficiency * util),
        offchip / (gpu.memory_bandwidth * gpu.bandwidth_efficiency * util),
    )


def gpu_gemm(m: int, n: int, k: int, gpu: GPUSpec, energy: EnergySpec, bytes_per_value: int = 2) -> Cost:
    """One GPU computing an (m x k) @ (k x n) product: m tokens against a k x n weight slice.

    Time is AttAcc's roofline: max(FLOPs / (peak x 0.8 x util), bytes / (bandwidth x 0.85 x util))
    where util is the SM-quantisation loss of the chosen tile. Off-chip bytes are the weights,
    inputs and outputs once (decoding inputs fit in L2). The library may pad m up to a multiple
    of 8..128 when that shape quantises better; we take the fastest padding. [A, D]

    Energy counts off-chip, L2, L1 and register traffic and the MACs of the m useful rows [A],
    with L2 traffic for canonical 128 x 128 tiles and L1 traffic for 16 x 16 register tiles, so
    that it does not inherit the tile search's ripples. [D]
    """
    candidates = {m} | {-(-m // q) * q for q in (8, 16, 32, 64, 128)}
    t = min(_gpu_gemm_time(mm, n, k, gpu, bytes_per_value) for mm in candidates)
    offchip = float(n * k + m * k + m * n) * bytes_per_value
    tm, tn = min(m, _L2_TILE), min(n, _L2_TILE)
    l2 = (math.ceil(n / tn) * m * k + math.ceil(m / tm) * n * k + m * n) * bytes_per_value
    l1 = (math.ceil(n / _REG_TILE) * m * k + math.ceil(m / _REG_TILE) * n * k + m * n) * bytes_per_value
    macs = m * n * k
    e = (
        offchip * energy.gpu_offchip_pj_per_byte
        + l2 * energy.gpu_l2_pj_per_byte
        + l1 * energy.gpu_l1_pj_per_byte
        + 3 * macs * energy.gpu_reg_pj_per_access
        + macs * energy.mac_pj
    ) * PJ
    return Cost(t, e)


def gpu_streaming(nbytes: float, macs: float, gpu: GPUSpec, energy: EnergySpec) -> Cost:
    """A GPU kernel that streams ``nbytes`` once and does ``macs`` MACs (attention on a GPU)."""
    t = max(
        2.0 * macs / (gpu.peak_flops * gpu.compute_efficiency),
        nbytes / (gpu.memory_bandwidth * gpu.bandwidth_efficiency),
    )
    e = (nbytes * (energy.gpu_offchip_pj_per_byte + energy.gpu_l2_pj_per_byte) + macs * energy.mac_pj) * PJ
    return Cost(t, e)


def gpu_fitted_kernel(nbytes: float, flops: float, base_s: float, s_per_byte: float,
                      gpu: GPUSpec, energy: EnergySpec) -> Cost:
    """Layer-norm / activation kernels: AttAcc's fit, base + bytes x slope x (1555 GB/s / bw). [A]"""
    t = base_s + s_per_byte * (gpu.kernel_fit_reference_bandwidth / gpu.memory_bandwidth) * nbytes
    e = (nbytes * energy.gpu_offchip_pj_per_byte + flops / 2 * energy.mac_pj) * PJ
    return Cost(t, e)


def allreduce(nbytes: float, num_gpus: int, gpu: GPUSpec, energy: EnergySpec) -> Cost:
    """Ring all-reduce of ``nbytes`` (each GPU's partial result) over NVLink. [A]

    (n-1) steps, each max(6.06 us + 0.009 ns/B x chunk x 600 GB/s / bw, chunk / (bw / 2)) with
    chunk = nbytes / n. Energy: every GPU sends ``nbytes`` over the link.
    """
    if num_gpus <= 1:
        return ZERO
    chunk = nbytes / num_gpus
    scale = 600e9 / gpu.nvlink_bandwidth
    step = max(
        gpu.allreduce_step_latency_s + gpu.allreduce_step_s_per_byte * scale * chunk,
        chunk / (gpu.nvlink_bandwidth / 2),
    )
    return Cost((num_gpus - 1) * step, num_gpus * nbytes * energy.link_pj_per_byte * PJ)


def link_transfer(nbytes_per_link: float, num_links: int, link: LinkSpec, energy: EnergySpec) -> Cost:
    """``num_links`` links in parallel, each moving ``nbytes_per_link`` one way."""
    if nbytes_per_link <= 0:
        return ZERO
    return Cost(
        link.transfer_time(nbytes_per_link),
        num_links * nbytes_per_link * energy.link_pj_per_byte * PJ,
    )


def pim_rounds(pim: PIMSpec, reuse: float) -> float:
    """MAC rounds per column access time slot for ``reuse`` input vectors. [D]

    A PU does ``macs_per_access`` MACs per 32 B access for ONE input vector. With p >= 1 PUs per
    bank, one column feeds p PUs, each on its own input vector: ceil(reuse / p) rounds. With p < 1
    (one PU per 1/p banks) the PU serves its banks in turn: reuse / p rounds of PU time per column.
    """
    p = pim.pus_per_bank
    if p >= 1:
        return float(math.ceil(reuse / p))
    return reuse / p


def pim_bank_time(columns: float, rows: float, reuse: float, pim: PIMSpec) -> float:
    """Seconds one bank needs for ``columns`` column accesses spread over ``rows`` rows. [D from A]

    Columns x rounds x MAC spacing (6 tCK under the power budget, else 4), plus one activation
    (tRP + tRCD) per row: all banks of a channel move in lock-step on all-bank commands, so with
    p >= 1 PUs per bank nothing hides it; with one PU per 2 banks the other bank's work does.
    Stretched by all-bank refresh (tRFC / tREFI).
    """
    st = pim.stack
    rounds = pim_rounds(pim, reuse)
    spacing = pim.mac_spacing_cycles * st.tck_s
    activation = (st.trp + st.trcd) * st.tck_s
    if pim.pus_per_bank >= 1:
        act_time = rows * activation
    else:
        row_work = (st.row_bytes / st.column_bytes) * rounds * spacing
        act_time = rows * max(0.0, activation - row_work)
    return (columns * rounds * spacing + act_time) * st.refresh_factor


def pim_array_energy(data_bytes: float, reuse: float, pim: PIMSpec, energy: EnergySpec) -> tuple[float, float]:
    """(DRAM-access joules, MAC joules) of applying ``data_bytes`` to ``reuse`` input vectors. [A, D]

    DRAM access: ACT/PRE once per byte and a cell read once per byte (per row activation), or once
    per MAC round when ``energy.pim_reread_per_round``. MACs: 0.32 pJ each, data_bytes / 2 x reuse.
    """
    if not energy.pim_reread_per_round:
        reads = 1.0
    elif pim.pus_per_bank >= 1:
        reads = pim_rounds(pim, reuse)  # p PUs share each read
    else:
        reads = float(reuse)  # one read per input vector and bank
    dram = data_bytes * (energy.cell_act_pre_pj_per_bit + reads * energy.cell_rd_wr_pj_per_bit) * 8 * PJ
    mac = data_bytes / 2 * reuse * energy.mac_pj * PJ
    return dram, mac


def pim_kernel(data_bytes: float, reuse: float, in_bytes_per_stack: float, out_bytes_per_stack: float,
               num_stacks: int, pim: PIMSpec, energy: EnergySpec) -> Cost:
    """A GEMV-like kernel on ``num_stacks`` PIM stacks from bank-level timing. [D from A, P]

    ``data_bytes`` (FC weights) are spread evenly over every PIM bank; each byte meets ``reuse``
    input vectors (RLP x TLP). Time per bank from :func:`pim_bank_time`, plus moving operands
    between the buffer die and the banks at the stack's external bandwidth.
    Energy = DRAM access (:func:`pim_array_energy`) + MACs + operand I/O.
    """
    st = pim.stack
    banks = pim.pim_banks * num_stacks
    per_bank = data_bytes / banks
    t = pim_bank_time(per_bank / st.column_bytes, per_bank / st.row_bytes, reuse, pim)
    io_bytes = in_bytes_per_stack + out_bytes_per_stack
    t += io_bytes / st.external_bandwidth
    dram, mac = pim_array_energy(data_bytes, reuse, pim, energy)
    e = dram + mac + io_bytes * num_stacks * energy.pim_io_pj_per_byte * PJ
    return Cost(t, e)


def pim_attention(ops: int, mean_context: float, head_bytes_per_token: int, reuse: float,
                  num_stacks: int, pim: PIMSpec, energy: EnergySpec) -> Cost:
    """One layer's attention (score, softmax, context) on PIM stacks, command by command. [D from A]

    AttAcc's mapping [A]: an *op* is one request's one KV head; it occupies one channel of one
    stack, its tokens split over the channel's pseudo-channels x ranks x bank groups and its head
    dimension over the banks of a group. The ops of a stack run in sequence on its channels, so a
    layer takes ceil(ceil(ops / stacks) / channels) op times: with few requests most channels
    idle, which is the per-layer floor. An op's score and context phases each read its K (V) rows
    once: per bank, ceil(L / token partitions) tokens of (head bytes / banks per group), plus the
    partial last row (half a row on average [D]). Softmax and the buffer-die moves of one op
    overlap the next op's MACs (AttAcc's schedule), so only one op's worth is exposed per layer:
    the query in, the scores out and back, the output out, at tCCD_S per 32 B, and the softmax at
    16 scores per tCK [A]. ``mean_context`` stands for every op's L (tokens).
    """
    st = pim.stack
    token_parts = st.pseudo_channels * st.ranks * pim.bank_groups_with_pus
    dim_parts = st.banks_per_group
    bytes_per_bank_token = math.ceil(head_bytes_per_token / dim_parts / st.column_bytes) * st.column_bytes
    per_bank = mean_context / token_parts * bytes_per_bank_token  # one phase (K or V)
    columns = per_bank / st.column_bytes
    rows = per_bank / st.row_bytes + 0.5
    op_time = 2 * pim_bank_time(columns, rows, reuse, pim)
    waves = math.ceil(math.ceil(ops / num_stacks) / st.channels)
    scores = mean_context * reuse
    # per op through the buffer die: the queries in and the outputs out, the scores out and back
    moved_bytes = 2 * head_bytes_per_token * reuse + 2 * scores * SCORE_BYTES
    exposed = (moved_bytes / st.column_bytes * st.tccd_s + scores / st.softmax_scores_per_tck) * st.tck_s
    t = waves * op_time + exposed
    kv_bytes = 2.0 * ops * mean_context * head_bytes_per_token
    dram, mac = pim_array_energy(kv_bytes, reuse, pim, energy)
    io = ops * moved_bytes * energy.pim_io_pj_per_byte * PJ
    sfm = ops * (2 * scores * SCORE_BYTES * energy.pim_sram_pj_per_byte + 5 * scores / 2 * energy.mac_pj) * PJ
    return Cost(t, dram + mac + io + sfm)


def pim_vector(nbytes: float, flops: float, num_stacks: int, pim: PIMSpec, energy: EnergySpec) -> Cost:
    """An element-wise kernel (norm, activation, residual) on the stacks' buffer dies. [D from A]

    As AttAcc runs softmax on the buffer die: ``nbytes`` stream through at the stacks' external
    bandwidth, the work split evenly over ``num_stacks``. Energy: buffer SRAM and MACs.
    """
    rate = pim.stack.external_bandwidth * num_stacks
    t = max(nbytes, flops) / rate
    return Cost(t, (nbytes * energy.pim_sram_pj_per_byte + flops / 2 * energy.mac_pj) * PJ)
