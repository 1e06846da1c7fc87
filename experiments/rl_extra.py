"""A clear message when the ``[rl]`` extra (torch, stable-baselines3, TensorBoard, rliable) is missing."""

from __future__ import annotations

import importlib
import sys

RL_MODULES = ("torch", "stable_baselines3", "sb3_contrib", "tensorboard", "rliable")
HINT = ("the learning side of papi-gym needs the [rl] extra: pip install torch==2.13.0 && "
        "pip install -e '.[rl]'  (or: make setup)")


def require_rl(caller: str) -> None:
    """Import-check the [rl] modules. From a script (``caller == "__main__"``) a missing one is one
    line on stderr and exit code 2; from an import it is a ModuleNotFoundError with the hint."""
    for name in RL_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as err:
            message = f"error: module {err.name!r} is missing; {HINT}"
            if caller == "__main__":
                print(message, file=sys.stderr)
                raise SystemExit(2) from None
            raise ModuleNotFoundError(message, name=err.name) from None
