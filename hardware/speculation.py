"""The cost of speculative decoding's draft model (the acceptance process is dynamics: sim.acceptance).

The paper counts every verified token as accepted [P]. PapiSpecSchedule-v0 instead lets the
scheduler choose the speculation length (TLP) each iteration, so it needs the draft's cost:

- :class:`DraftCost`: the draft model proposes TLP - 1 tokens per request, one autoregressive
  step each, on the GPUs before the target model verifies. A small draft is replicated on every
  GPU (data parallel, no all-reduce): each GPU drafts for ceil(RLP / GPUs) requests with the
  draft's KV cache in its own HBM. Cost of one step = the GPU-only decoding cost of the draft
  model on one GPU, energy times the number of GPUs. [D]
"""

from __future__ import annotations

import math

from hardware.costs import Cost
from hardware.models import ModelSpec, get_model
from hardware.specs import SpecError, SystemSpec, load_system, override
from hardware.systems import CostModel


class DraftCost:
    """Seconds and joules of the draft model's TLP - 1 steps per iteration (module docstring)."""

    def __init__(self, system: SystemSpec | str, draft_model: ModelSpec | str = "tinyllama-1.1b") -> None:
        sysm = load_system(system)
        if not sysm.has_gpus:
            raise SpecError(f"the draft model runs on the GPUs, and system '{sysm.name}' has none "
                            "(num_gpus = 0); use a system with GPUs for speculation studies")
        self.gpus = sysm.num_gpus
        one_gpu = override(sysm, {"num_gpus": 1, "attention_unit": "gpu", "fc_units": ["gpu"]})
        self.cost_model = CostModel(one_gpu, get_model(draft_model))
        self._steps: dict[tuple[int, int], Cost] = {}

    def step(self, rlp: int, sum_ctx: float) -> Cost:
        """One draft step for ``rlp`` requests whose contexts sum to ``sum_ctx`` tokens."""
        per_gpu = math.ceil(rlp / self.gpus)
        c = self.cost_model.iteration(per_gpu, 1, sum_ctx * per_gpu / rlp, "gpu")
        return Cost(c.time, c.energy * self.gpus)

    def draft(self, rlp: int, tlp: int, sum_ctx: float) -> Cost:
        """The TLP - 1 draft steps of one iteration (zero at TLP 1)."""
        if tlp <= 1:
            return Cost(0.0, 0.0)
        return self.step(rlp, sum_ctx).scaled(tlp - 1)
