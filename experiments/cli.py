"""Shared command-line checks: user errors become one line on stderr and exit code 2."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any


class UsageError(ValueError):
    """A command-line value that cannot be used; the message says what is allowed."""


def parse_env_kwargs(text: str | None, flag: str = "--env-kwargs") -> dict[str, Any]:
    """A JSON object of env keyword arguments (empty when ``text`` is None)."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise UsageError(f"{flag} is not valid JSON ({err.msg} at character {err.pos}): {text!r}") from None
    if not isinstance(value, dict):
        raise UsageError(f"{flag} must be a JSON object such as '{{\"reward\": \"edp\"}}', got {text!r}")
    return value


def check_env_kwargs(env_id: str, kwargs: dict[str, Any], flag: str = "--env-kwargs") -> None:
    """Build the environment once with ``kwargs`` so that a bad key or value fails before any work."""
    import gymnasium as gym

    import papi_env  # noqa: F401  (registers the environments)

    try:
        env = gym.make(env_id, **kwargs)
    except TypeError as err:
        raise UsageError(f"{flag} for {env_id}: {err}") from None
    except gym.error.Error as err:
        raise UsageError(f"environment {env_id!r}: {err}") from None
    except ValueError as err:
        raise UsageError(f"{flag} for {env_id}: {err}") from None
    env.close()


def check_output_dir(path: Path, flag: str = "--out") -> Path:
    """An output directory that exists or can be made (not a file) and can be written to (a probe
    file is created and removed), checked before the work."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{flag} {path} is a file; give a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"{flag} {path}: cannot create it ({err.strerror})") from None
    try:
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-probe-"):
            pass
    except OSError as err:
        raise UsageError(f"{flag} {path}: cannot write there ({err.strerror})") from None
    return path


def finite(value: float, flag: str) -> float:
    """``value`` if it is a finite number, else a UsageError naming ``flag`` (inf and nan pass
    argparse's float())."""
    if not math.isfinite(value):
        raise UsageError(f"{flag} must be a finite number, got {value!r}")
    return value


def positive(value: int, flag: str) -> int:
    """``value`` if it is a positive integer, else a UsageError naming ``flag``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UsageError(f"{flag} must be a positive integer, got {value!r}")
    return value
