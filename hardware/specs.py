"""Hardware parameters of PAPI and its baselines, as data.

Every number lives here, once, as a named field with its unit and its provenance:

- **[P]** stated by the PAPI paper (He et al., ASPLOS 2025),
- **[A]** taken from the public AttAcc simulator (Park et al., ASPLOS 2024; github.com/scale-snu/
  attacc_simulator, ``src/config.py`` and ``src/devices.py``), on which PAPI's simulator was built,
- **[D]** derived by us from the above (the derivation is in the field's note).

Presets (``GPU_PRESETS``, ``PIM_PRESETS``, ``LINK_PRESETS``, ``SYSTEM_PRESETS``) are plain
dataclass instances. Any field can be overridden from a dict, a JSON file or a YAML file with
:func:`load_system`; unknown keys and non-physical values are rejected with a message that names
the field. Example override file (an H100 host with HBM3E-class FC stacks)::

    {"base": "papi", "gpu": "H100", "fc_pim": {"timing": {"tck_s": 0.625e-9}}}
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

GB = 1e9  # bytes; decimal, as in the AttAcc configuration
MAX_DEVICES = 1_000_000  # [D] sanity bound on GPU / stack counts: beyond any machine built
GiB = 1024**3


def param(default: Any, unit: str, source: str, minimum: float = 0.0, strict: bool = True,
          maximum: float | None = None):
    """A documented numeric field: value, unit, provenance and the physical bounds.

    ``strict`` means the value must be greater than ``minimum``; otherwise greater or equal. An
    integer default makes the field a count: it must then be a whole number.
    """
    return field(
        default=default,
        metadata={"unit": unit, "source": source, "minimum": minimum, "strict": strict, "maximum": maximum,
                  "whole": isinstance(default, int) and not isinstance(default, bool)},
    )


class SpecError(ValueError):
    """A hardware or model specification is malformed or non-physical."""


def _validate_numbers(spec: Any) -> None:
    """Check every documented numeric field of ``spec`` against its physical bound."""
    for f in fields(spec):
        if "unit" not in f.metadata:
            continue
        value = getattr(spec, f.name)
        name = f"{type(spec).__name__}.{f.name}"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SpecError(f"{name} must be a number ({f.metadata['unit']}), got {value!r}")
        if not math.isfinite(value):
            raise SpecError(f"{name} must be finite, got {value!r}")
        low, strict = f.metadata["minimum"], f.metadata["strict"]
        if (strict and value <= low) or (not strict and value < low):
            bound = f"> {low}" if strict else f">= {low}"
            raise SpecError(f"{name} = {value!r} is not physical: it must be {bound} {f.metadata['unit']}")
        high = f.metadata.get("maximum")
        if high is not None and value > high:
            raise SpecError(f"{name} = {value!r} is not physical: it must be <= {high:g} {f.metadata['unit']}")
        if f.metadata.get("whole") and value != int(value):
            raise SpecError(f"{name} = {value!r} must be a whole number of {f.metadata['unit']}")


@dataclass(frozen=True)
class HBMStack:
    """One HBM3 stack: organisation and DRAM timing (shared by plain HBM and every PIM kind)."""

    channels: int = param(16, "channels", "[A] HBM3 in AttAcc's Ramulator2 config (HBM3_base.yaml)")
    pseudo_channels: int = param(2, "pseudo-channels per channel", "[A]")
    ranks: int = param(2, "ranks (stack IDs) per pseudo-channel", "[A]")
    bank_groups: int = param(4, "bank groups per rank", "[A]")
    banks_per_group: int = param(4, "banks per bank group", "[A]")
    row_bytes: int = param(1024, "bytes per row", "[A] 1 KB page")
    column_bytes: int = param(32, "bytes per column access", "[A] 32 B per access (BL8 x 32 bit)")
    tck_s: float = param(0.769e-9, "s", "[A] tCK of HBM3 at 5.2 Gb/s per pin [P]")
    trcd: int = param(19, "tCK", "[A] activate to column command")
    trp: int = param(19, "tCK", "[A] precharge")
    tras: int = param(45, "tCK", "[A] activate to precharge")
    trc: int = param(63, "tCK", "[A] activate to activate, same bank")
    tccd_s: int = param(2, "tCK", "[A] column to column, different bank group")
    tccd_l: int = param(4, "tCK", "[A] column to column, same bank group")
    mac_spacing_power_budget: int = param(
        6, "tCK", "[A] all-bank MAC command spacing that keeps an HBM3 stack in its power budget"
    )
    mac_spacing_unconstrained: int = param(
        4, "tCK", "[A] all-bank MAC spacing without the power budget (= tCCD_L)"
    )
    trfc: int = param(260, "tCK", "[A] all-bank refresh cycle time (HBM3_5.2Gbps preset, nRFC)")
    trefi: int = param(5070, "tCK", "[A] refresh interval (HBM3_5.2Gbps preset, nREFI)")
    softmax_scores_per_tck: float = param(
        16.0, "scores per tCK per channel",
        "[A] AttAcc's buffer-die softmax command: 16 tCK for a 256-score row (trace generator)",
    )
    external_bandwidth: float = param(
        670.4 * GB, "B/s", "[A] off-stack bandwidth of one HBM3 stack (AttAcc: 670.4 GB/s)"
    )

    def __post_init__(self) -> None:
        _validate_numbers(self)
        if self.trfc >= self.trefi:
            raise SpecError(f"HBMStack.trfc = {self.trfc} must be below trefi = {self.trefi} tCK")

    @property
    def refresh_factor(self) -> float:
        """Stretch of PIM command time by all-bank refresh: 1 / (1 - tRFC / tREFI), 1.054. [D from A]"""
        return 1.0 / (1.0 - self.trfc / self.trefi)

    @property
    def banks(self) -> int:
        """Banks in the stack (1024 for HBM3 as modelled)."""
        return (
            self.channels * self.pseudo_channels * self.ranks * self.bank_groups * self.banks_per_group
        )


@dataclass(frozen=True)
class PIMSpec:
    """A processing-in-memory stack kind: how many processing units (PUs) sit at the banks."""

    name: str = "pim"
    pus_per_bank: float = param(1.0, "PUs per bank", "[P] 1P1B AttAcc, 4P1B FC-PIM, 1P2B Attn-PIM")
    bank_groups_with_pus: int = param(
        4, "bank groups per rank that hold PUs", "[P] FC-PIM: 3 of 4 (96 banks per die)"
    )
    macs_per_access: int = param(16, "FP16 MACs per PU per 32 B access", "[A] 16-lane FP16 FPU")
    capacity_bytes: float = param(16 * GB, "B per stack", "[P] 16 GB (FC-PIM: 12 GB)")
    power_budget: bool = True
    """If True (every preset), all-bank MACs are spaced at ``mac_spacing_power_budget`` (6 tCK),
    else at the unconstrained spacing (4 tCK). [P] PAPI designs every PIM kind within the HBM power
    budget (FC-PIM sized to stay under it when reuse >= 4; Attn-PIM made 1P2B because 1P1B exceeds
    it), so the compared PIM devices run at the budget's spacing. [A] AttAcc's simulator offers
    both (its ``--powerlimit`` flag selects 6 tCK)."""
    stack: HBMStack = field(default_factory=HBMStack)

    def __post_init__(self) -> None:
        _validate_numbers(self)
        if self.bank_groups_with_pus > self.stack.bank_groups:
            raise SpecError(
                f"PIMSpec.bank_groups_with_pus = {self.bank_groups_with_pus} exceeds the stack's "
                f"{self.stack.bank_groups} bank groups"
            )

    @property
    def pim_banks(self) -> int:
        """Banks per stack that have PUs (FC-PIM: 768; full organisation: 1024)."""
        return self.stack.banks * self.bank_groups_with_pus // self.stack.bank_groups

    @property
    def mac_spacing_cycles(self) -> int:
        """tCK between two all-bank MAC commands."""
        s = self.stack
        return s.mac_spacing_power_budget if self.power_budget else s.mac_spacing_unconstrained

    @property
    def internal_bandwidth(self) -> float:
        """Aggregate bank read bandwidth of one stack during all-bank MACs, B/s. [D]"""
        return self.pim_banks * self.stack.column_bytes / (self.mac_spacing_cycles * self.stack.tck_s)

    @property
    def peak_flops(self) -> float:
        """Peak FP16 FLOP/s of one stack (2 FLOPs per MAC). [D]"""
        pus = self.pim_banks * self.pus_per_bank
        return pus * self.macs_per_access * 2 / (self.mac_spacing_cycles * self.stack.tck_s)


@dataclass(frozen=True)
class GPUSpec:
    """A GPU as AttAcc models it: roofline with efficiency caps, SM quantisation, fitted kernels."""

    name: str = "A100"
    peak_flops: float = param(312e12, "FLOP/s", "[A] A100 dense FP16 tensor core ('A100a')")
    memory_bandwidth: float = param(3352 * GB, "B/s", "[A] 'A100a': 5 HBM3 stacks x 670.4 GB/s")
    memory_capacity: float = param(60 * GB, "B", "[P] 5 FC-PIM stacks x 12 GB per GPU")
    compute_efficiency: float = param(0.8, "fraction", "[A] MAX_COMPUTE_UTIL")
    bandwidth_efficiency: float = param(0.85, "fraction", "[A] MAX_OFF_MEM_BW_UTIL")
    num_sms: int = param(108, "SMs", "[A] A100")
    l1_bytes_per_sm: float = param(192 * 1024, "B", "[A] A100 L1/shared memory per SM")
    nvlink_bandwidth: float = param(600 * GB, "B/s", "[A] NVLink3, both directions")
    allreduce_step_latency_s: float = param(
        6.06e-6, "s", "[A] fit of NCCL on A100 NVLink: 6060 ns + 0.009 ns/B per ring step"
    )
    allreduce_step_s_per_byte: float = param(
        0.009e-9, "s/B", "[A] same fit, at 600 GB/s (scaled by 600 GB/s / nvlink_bandwidth)"
    )
    act_kernel_base_s: float = param(8.29e-6, "s", "[A] activation kernel fit on A100")
    act_kernel_s_per_byte: float = param(
        4.47e-13, "s/B", "[A] activation kernel fit at 1555 GB/s (scaled by 1555 GB/s / bandwidth)"
    )
    norm_kernel_base_s: float = param(6.87e-6, "s", "[A] layer-norm kernel fit on A100")
    norm_kernel_s_per_byte: float = param(
        1.6e-12, "s/B", "[A] layer-norm kernel fit at 1555 GB/s (scaled as above)"
    )
    kernel_fit_reference_bandwidth: float = param(
        1555 * GB, "B/s", "[A] bandwidth of the A100-40GB the kernel fits were measured on"
    )

    def __post_init__(self) -> None:
        _validate_numbers(self)
        for name in ("compute_efficiency", "bandwidth_efficiency"):
            if getattr(self, name) > 1:
                raise SpecError(f"GPUSpec.{name} = {getattr(self, name)} must be <= 1")


@dataclass(frozen=True)
class LinkSpec:
    """A point-to-point interconnect; AttAcc uses half the bandwidth per direction."""

    name: str = "link"
    bandwidth: float = param(128 * GB, "B/s", "both directions")
    latency_s: float = param(
        0.0, "s", "[A] AttAcc models transfers as bandwidth only", minimum=0.0, strict=False
    )

    def __post_init__(self) -> None:
        _validate_numbers(self)

    def transfer_time(self, nbytes: float) -> float:
        """Seconds to move ``nbytes`` one way."""
        return self.latency_s + nbytes / (self.bandwidth / 2)


@dataclass(frozen=True)
class EnergySpec:
    """Energy per operation. DRAM terms are per bit, as published; properties give per byte."""

    cell_act_pre_pj_per_bit: float = param(0.11, "pJ/bit", "[A] FGDRAM (MICRO'17): ACT/PRE")
    cell_rd_wr_pj_per_bit: float = param(0.44, "pJ/bit", "[A] FGDRAM: RD/WR in the cell array")
    column_to_bg_mux_pj_per_bit: float = param(1.01, "pJ/bit", "[A] column decoder to bank-group mux")
    bg_mux_to_gio_pj_per_bit: float = param(1.23, "pJ/bit", "[A] bank-group mux to global I/O")
    tsv_pj_per_bit: float = param(0.5, "pJ/bit", "[A] through-silicon vias")
    interposer_pj_per_bit: float = param(0.3, "pJ/bit", "[A] silicon interposer I/O")
    mac_pj: float = param(0.32, "pJ per FP16 MAC", "[A] ENERGY_TABLE alu")
    gpu_l2_pj_per_byte: float = param(2.4, "pJ/B", "[A] 0.3 pJ/bit")
    gpu_l1_pj_per_byte: float = param(1.28, "pJ/B", "[A] 0.16 pJ/bit")
    gpu_reg_pj_per_access: float = param(0.0675, "pJ per operand access", "[A] register file")
    link_pj_per_byte: float = param(10.4, "pJ/B", "[A] 1.3 pJ/bit off-package link")
    pim_sram_pj_per_byte: float = param(0.0034, "pJ/B", "[A] PIM buffer-die SRAM (softmax)")
    pim_reread_per_round: bool = False
    """How often a PIM kernel reads a weight/KV byte from the cell array. False (default): once per
    row activation; the PU keeps the 32 B column in its operand latch while it applies it to every
    input vector (its MAC rounds). This reproduces the paper's Fig. 7: DRAM access is 96.7% of a
    1P1B kernel's energy with no reuse and 33.1% at 64x reuse [P]. True: the column is read again
    for every round (papi-gym v0.1), which gives 95.7% at 64x reuse, contradicting Fig. 7. [D]"""

    def __post_init__(self) -> None:
        _validate_numbers(self)

    @property
    def pim_bank_read_pj_per_byte(self) -> float:
        """A bank-level PIM read: cell only (ACT/PRE + RD), 4.4 pJ/B. [A]"""
        return (self.cell_act_pre_pj_per_bit + self.cell_rd_wr_pj_per_bit) * 8

    @property
    def gpu_offchip_pj_per_byte(self) -> float:
        """A GPU off-chip read through the whole HBM path, 28.72 pJ/B. [A]"""
        return 8 * (
            self.cell_act_pre_pj_per_bit
            + self.cell_rd_wr_pj_per_bit
            + self.column_to_bg_mux_pj_per_bit
            + self.bg_mux_to_gio_pj_per_bit
            + self.tsv_pj_per_bit
            + self.interposer_pj_per_bit
        )

    @property
    def pim_io_pj_per_byte(self) -> float:
        """Moving operands between a stack's buffer die and its banks (no cell access). [D]"""
        return 8 * (
            self.column_to_bg_mux_pj_per_bit + self.bg_mux_to_gio_pj_per_bit + self.tsv_pj_per_bit
        )


FC_UNITS = ("pim", "gpu")  # action 0 = FC-PIM, 1 = GPU (the order of the environments' action)
ATTENTION_UNITS = ("pim", "gpu")
VECTOR_UNITS = ("gpu", "pim_buffer")
PREFILL_UNITS = ("gpu", "pim")


@dataclass(frozen=True)
class SystemSpec:
    """One compared system: 6 GPUs, 30 FC stacks and 60 attention stacks [P]."""

    name: str = "papi"
    description: str = ""
    gpu: GPUSpec = field(default_factory=GPUSpec)
    num_gpus: int = param(
        6, "GPUs", "[P] 6 x A100, tensor-parallel; 0 for the PIM-only systems", strict=False,
        maximum=MAX_DEVICES,
    )
    fc_stacks: int = param(30, "HBM stacks holding FC weights", "[P] 30 of the 90 stacks", maximum=MAX_DEVICES)
    attention_stacks: int = param(60, "HBM stacks holding the KV cache", "[P] 60 of the 90 stacks",
                                  maximum=MAX_DEVICES)
    fc_pim: PIMSpec | None = None
    """The PIM kind of the FC stacks, or None when they are plain HBM (FC can only run on GPU)."""
    fc_units: tuple[str, ...] = ("gpu",)
    """Where the FC kernels may run: a subset of ("pim", "gpu")."""
    attention_unit: str = "pim"
    attention_pim: PIMSpec | None = None
    attention_link: LinkSpec = field(default_factory=LinkSpec)
    """The link type between the FC side and the attention stacks. [P] PAPI: Attn-PIM is
    disaggregated on PCIe/CXL; [A] AttAcc's simulator attaches its devices over NVLink3."""
    attention_links: int = param(
        6, "links", "[P] one per GPU; [D] one host CXL port for the PIM-only systems", maximum=MAX_DEVICES,
    )
    vector_unit: str = "gpu"
    """Where layer norms, activations and residual adds run: 'gpu' (AttAcc's fitted A100 kernels
    [A]) or 'pim_buffer' (the FC stacks' buffer dies, at their external bandwidth, as AttAcc runs
    softmax [A]; the only choice for a system without GPUs [D])."""
    prefill_unit: str = "gpu"
    """Where prefill runs: 'gpu' (compute-bound, on the GPUs [P]) or 'pim' (FC on the FC stacks
    and attention on the attention stacks, for a system without GPUs [D])."""
    energy: EnergySpec = field(default_factory=EnergySpec)

    def __post_init__(self) -> None:
        _validate_numbers(self)
        if not self.fc_units or any(u not in FC_UNITS for u in self.fc_units):
            raise SpecError(f"SystemSpec.fc_units = {self.fc_units!r}: each must be one of {FC_UNITS}")
        if "pim" in self.fc_units and self.fc_pim is None:
            raise SpecError(f"system '{self.name}': fc_units allows 'pim' but fc_pim is not set")
        if self.attention_unit not in ATTENTION_UNITS:
            raise SpecError(
                f"SystemSpec.attention_unit = {self.attention_unit!r}: must be one of {ATTENTION_UNITS}"
            )
        if self.attention_unit == "pim" and self.attention_pim is None:
            raise SpecError(f"system '{self.name}': attention_unit is 'pim' but attention_pim is not set")
        if self.vector_unit not in VECTOR_UNITS:
            raise SpecError(f"SystemSpec.vector_unit = {self.vector_unit!r}: must be one of {VECTOR_UNITS}")
        if self.prefill_unit not in PREFILL_UNITS:
            raise SpecError(f"SystemSpec.prefill_unit = {self.prefill_unit!r}: must be one of {PREFILL_UNITS}")
        if self.vector_unit == "pim_buffer" and self.fc_pim is None:
            raise SpecError(f"system '{self.name}': vector_unit 'pim_buffer' needs PIM FC stacks (fc_pim)")
        if self.num_gpus == 0:
            needs_gpu = [f"{name} = {value!r}" for name, value, ok in (
                ("fc_units", self.fc_units, "gpu" not in self.fc_units),
                ("attention_unit", self.attention_unit, self.attention_unit != "gpu"),
                ("vector_unit", self.vector_unit, self.vector_unit != "gpu"),
                ("prefill_unit", self.prefill_unit, self.prefill_unit != "gpu"),
            ) if not ok]
            if needs_gpu:
                raise SpecError(f"system '{self.name}' has num_gpus = 0 but uses the GPUs: "
                                + ", ".join(needs_gpu) + " (use 'pim' / 'pim_buffer')")

    @property
    def has_gpus(self) -> bool:
        """True when the system has GPUs (the PIM-only systems have none)."""
        return self.num_gpus > 0


HBM3 = HBMStack()

PIM_PRESETS: dict[str, PIMSpec] = {
    "attacc": PIMSpec(name="AttAcc 1P1B", pus_per_bank=1.0, capacity_bytes=16 * GB),
    "hbm_pim": PIMSpec(name="HBM-PIM 1P2B", pus_per_bank=0.5, capacity_bytes=16 * GB),
    "fc_pim": PIMSpec(
        name="FC-PIM 4P1B", pus_per_bank=4.0, bank_groups_with_pus=3, capacity_bytes=12 * GB
    ),
    "attn_pim": PIMSpec(name="Attn-PIM 1P2B", pus_per_bank=0.5, capacity_bytes=16 * GB),
}

GPU_PRESETS: dict[str, GPUSpec] = {
    "A100": GPUSpec(),
    # [A] AttAcc's H100 entry: 989.4 TFLOP/s dense FP16, 3352 GB/s HBM3, NVLink4 900 GB/s.
    "H100": GPUSpec(
        name="H100",
        peak_flops=989.4e12,
        memory_bandwidth=3352 * GB,
        num_sms=132,
        l1_bytes_per_sm=256 * 1024,
        nvlink_bandwidth=900 * GB,
    ),
}

LINK_PRESETS: dict[str, LinkSpec] = {
    "nvlink3": LinkSpec(name="NVLink3", bandwidth=600 * GB),
    "nvlink4": LinkSpec(name="NVLink4", bandwidth=900 * GB),
    "pcie4": LinkSpec(name="PCIe4 x16", bandwidth=64 * GB),
    "pcie5": LinkSpec(name="PCIe5 x16", bandwidth=128 * GB),
    # CXL 2.0/3.0 runs over the PCIe5 PHY: same raw bandwidth [D].
    "cxl": LinkSpec(name="CXL (PCIe5 PHY)", bandwidth=128 * GB),
}


def _system_presets() -> dict[str, SystemSpec]:
    gpu, links, pims = GPU_PRESETS["A100"], LINK_PRESETS, PIM_PRESETS
    # [D] Without GPUs a host CPU orchestrates the PIM devices; everything that crosses between the
    # FC stacks and the attention stacks goes through its one CXL port. Both PIM-only systems share
    # this interconnect ([P]: PIM-only PAPI has AttAcc-only's device count and interconnect).
    pim_only = dict(num_gpus=0, vector_unit="pim_buffer", prefill_unit="pim",
                    attention_link=links["cxl"], attention_links=1)
    return {
        "papi": SystemSpec(
            name="papi",
            description="PAPI: FC on GPU or FC-PIM by the characterizer, attention on Attn-PIM (CXL)",
            gpu=gpu,
            fc_pim=pims["fc_pim"],
            fc_units=("pim", "gpu"),
            attention_pim=pims["attn_pim"],
            attention_link=links["cxl"],  # [P] Attn-PIM is disaggregated on PCIe/CXL
        ),
        "pimonly_papi": SystemSpec(
            name="pimonly_papi",
            description="PIM-only PAPI (ablation): no GPUs; FC on FC-PIM, attention on Attn-PIM, "
                        "norms/activations on the FC stacks' buffer dies; one host CXL link",
            gpu=gpu,
            fc_pim=pims["fc_pim"],
            fc_units=("pim",),
            attention_pim=pims["attn_pim"],
            **pim_only,
        ),
        "a100_attacc": SystemSpec(
            name="a100_attacc",
            description="A100+AttAcc: FC on GPU, attention on AttAcc 1P1B (NVLink3)",
            gpu=gpu,
            fc_units=("gpu",),
            attention_pim=pims["attacc"],
            attention_link=links["nvlink3"],  # [A] AttAcc's simulator attaches AttAcc over NVLink3
        ),
        "a100_hbmpim": SystemSpec(
            name="a100_hbmpim",
            description="A100+HBM-PIM: FC on GPU, attention on HBM-PIM 1P2B (NVLink3)",
            gpu=gpu,
            fc_units=("gpu",),
            attention_pim=pims["hbm_pim"],
            attention_link=links["nvlink3"],  # [D] the AttAcc system with HBM-PIM devices
        ),
        "attacc_only": SystemSpec(
            name="attacc_only",
            description="AttAcc-only (PIM-only): no GPUs; FC and attention on AttAcc 1P1B, "
                        "norms/activations on the FC stacks' buffer dies; one host CXL link",
            gpu=gpu,
            fc_pim=pims["attacc"],
            fc_units=("pim",),
            attention_pim=pims["attacc"],
            **pim_only,
        ),
        "gpu_only": SystemSpec(
            name="gpu_only",
            description="GPU-only: FC and attention on the GPUs (KV capacity: the GPUs' HBM)",
            gpu=gpu,
            fc_units=("gpu",),
            attention_unit="gpu",
        ),
    }


SYSTEM_PRESETS: dict[str, SystemSpec] = _system_presets()


def _coerce(current: Any, value: Any, path: str) -> Any:
    """Turn ``value`` into the type of ``current`` for field ``path``, or raise SpecError."""
    if is_dataclass(current) or current is None and isinstance(value, (dict, str)):
        presets = {"gpu": GPU_PRESETS, "fc_pim": PIM_PRESETS, "attention_pim": PIM_PRESETS,
                   "attention_link": LINK_PRESETS}
        leaf = path.rsplit(".", 1)[-1]
        if isinstance(value, str):
            table = presets.get(leaf)
            if table is None or value not in table:
                allowed = sorted(table) if table else "a mapping of fields"
                raise SpecError(f"{path}: unknown preset {value!r}; allowed: {allowed}")
            return table[value]
        if isinstance(value, dict):
            if current is None:
                if leaf not in ("fc_pim", "attention_pim"):
                    raise SpecError(f"{path} is not set in the base system; give a preset name")
                current = PIMSpec()
            return override(current, value, path)
        raise SpecError(f"{path}: expected a preset name or a mapping, got {value!r}")
    if isinstance(current, bool):
        if not isinstance(value, bool):
            raise SpecError(f"{path} must be true or false, got {value!r}")
        return value
    if isinstance(current, (int, float)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SpecError(f"{path} must be a number, got {value!r}")
        return value
    if isinstance(current, tuple):
        if not isinstance(value, (list, tuple)):
            raise SpecError(f"{path} must be a list, got {value!r}")
        return tuple(value)
    if isinstance(current, str):
        if not isinstance(value, str):
            raise SpecError(f"{path} must be a string, got {value!r}")
        return value
    if value is None:
        return None
    raise SpecError(f"{path}: cannot set a value of type {type(value).__name__}")


def override(spec: Any, changes: dict[str, Any], path: str = "") -> Any:
    """Return a copy of dataclass ``spec`` with ``changes`` applied (nested dicts recurse).

    Raises SpecError naming the field on an unknown key, a wrong type or a non-physical value.
    """
    if not isinstance(changes, dict):
        raise SpecError(f"{path or type(spec).__name__}: expected a mapping, got {changes!r}")
    names = {f.name for f in fields(spec)}
    updates = {}
    for key, value in changes.items():
        where = f"{path}.{key}" if path else key
        if key not in names:
            raise SpecError(f"unknown field '{where}'; allowed: {sorted(names)}")
        updates[key] = _coerce(getattr(spec, key), value, where)
    try:
        return replace(spec, **updates)
    except SpecError as err:
        raise SpecError(f"{path + ': ' if path else ''}{err}") from None
    except TypeError as err:  # pragma: no cover - dataclass rejects a key we did not catch
        raise SpecError(str(err)) from None


def read_mapping(path: str | Path) -> dict[str, Any]:
    """Read a JSON or YAML mapping from ``path`` with a clear error on a malformed file."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"config file not found: {path}")
    text = path.read_text()
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml  # pyyaml; imported here so that plain JSON needs nothing

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as err:  # json.JSONDecodeError, yaml.YAMLError
        raise SpecError(f"{path}: not valid {path.suffix.lstrip('.') or 'JSON'}: {err}") from None
    if not isinstance(data, dict):
        raise SpecError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    return data


def get_system(name: str | SystemSpec, overrides: dict[str, Any] | None = None) -> SystemSpec:
    """A system preset by name (or a ready SystemSpec), with optional field overrides."""
    if isinstance(name, SystemSpec):
        spec = name
    else:
        if name not in SYSTEM_PRESETS:
            raise SpecError(f"unknown system {name!r}; allowed: {sorted(SYSTEM_PRESETS)}")
        spec = SYSTEM_PRESETS[name]
    return override(spec, overrides) if overrides else spec


def load_system(source: str | Path | dict[str, Any] | SystemSpec) -> SystemSpec:
    """A system from a preset name, a SystemSpec, a dict or a JSON/YAML file.

    A dict or file has an optional ``base`` (a preset name, default ``papi``) and any SystemSpec
    fields to override, nested (``{"gpu": {"peak_flops": 989.4e12}}``) or by preset name
    (``{"gpu": "H100", "attention_link": "pcie5"}``).
    """
    if isinstance(source, SystemSpec):
        return source
    if isinstance(source, str) and source in SYSTEM_PRESETS:
        return SYSTEM_PRESETS[source]
    if isinstance(source, (str, Path)) and not isinstance(source, dict):
        if not Path(source).suffix:
            raise SpecError(f"unknown system {source!r}; allowed: {sorted(SYSTEM_PRESETS)} or a .json/.yaml file")
        source = read_mapping(source)
    data = dict(source)
    base = data.pop("base", "papi")
    return get_system(base, data)


def describe(spec: Any, prefix: str = "") -> list[tuple[str, Any, str, str]]:
    """Flatten a spec into (field, value, unit, source) rows, for documentation and reports."""
    rows = []
    for f in fields(spec):
        value = getattr(spec, f.name)
        name = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            rows.extend(describe(value, name + "."))
        elif "unit" in f.metadata:
            rows.append((name, value, f.metadata["unit"], f.metadata["source"]))
    return rows
