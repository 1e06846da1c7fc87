"""Analytical performance and energy simulator of PAPI and its baselines.

Usable on its own: this package imports neither torch nor gymnasium.

Main entry points:
- :mod:`hardware.specs`: hardware parameters (presets, overrides from files, validation).
- :mod:`hardware.models`: LLM shapes.
- :mod:`hardware.systems`: the compared systems and the per-iteration cost model.
- :mod:`hardware.cost_tables`: the cost model's values tabulated for array lookups.
- :mod:`hardware.speculation`: the draft model's cost.
- :mod:`hardware.calibrate`: PAPI's offline alpha calibration and its online test (``fc_on_gpu``).
"""

from hardware.models import ModelSpec, get_model
from hardware.specs import SystemSpec, get_system
from hardware.systems import CostModel, IterationCost

__all__ = ["CostModel", "IterationCost", "ModelSpec", "SystemSpec", "get_model", "get_system"]
