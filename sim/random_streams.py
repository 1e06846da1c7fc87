"""Counter-based random numbers: a draw is a pure function of (episode key, iteration, request, stream).

The vector environments step N batches at once, and N batches stepped together must draw exactly
what N batches stepped one by one draw (same seeds, same numbers). A shared generator cannot give
that, and one generator per environment means a Python loop over environments every step. So the
per-iteration draws (which drafted tokens are accepted, how acceptance drifts) are the outputs of
SplitMix64 (Steele, Lea and Flood, OOPSLA 2014; the seeding generator of Java's SplittableRandom
and of xoshiro) at a counter made of the iteration, the request's slot and a stream number, under
a 64-bit key that each episode draws from its environment's seeded generator at reset. Draws are
then independent of how many environments are stepped together and of their order.
"""

from __future__ import annotations

import numpy as np

GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # SplitMix64's increment (2^64 / golden ratio)
MIX1, MIX2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)  # SplitMix64's output multipliers
SLOT_BITS, STREAM_BITS = 16, 4  # up to 65,536 requests per batch and 16 streams per iteration
UNIT = 2.0**-53
ACCEPT_STREAM = 0  # the stream of the acceptance draws (which drafts are kept)
DRIFT_STREAM = 1  # the acceptance drift's innovations: streams 1 and 2 (Box-Muller takes two)


def _mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64's output function (a bijection of uint64)."""
    x = (x ^ (x >> np.uint64(30))) * MIX1
    x = (x ^ (x >> np.uint64(27))) * MIX2
    return x ^ (x >> np.uint64(31))


def bits(key: np.ndarray, iteration: np.ndarray, slot: np.ndarray, stream: int) -> np.ndarray:
    """uint64 draws of ``stream``: SplitMix64(key)'s output number (iteration, slot, stream). The
    arrays broadcast together: ``key``, ``iteration`` (N, 1) against ``slot`` (1, width) for whole
    batches, or three (L,) arrays for chosen requests (the live ones); a request's draw is the same
    either way."""
    counter = ((iteration.astype(np.uint64) << np.uint64(SLOT_BITS + STREAM_BITS))
               | (slot.astype(np.uint64) << np.uint64(STREAM_BITS))
               | np.uint64(stream))
    return _mix(key + (counter + np.uint64(1)) * GOLDEN)


def uniform(key: np.ndarray, iteration: np.ndarray, slot: np.ndarray, stream: int) -> np.ndarray:
    """Float64 uniforms on (0, 1] (53 random bits; never 0, so log() is finite); arrays as ``bits``."""
    return ((bits(key, iteration, slot, stream) >> np.uint64(11)) + np.uint64(1)).astype(np.float64) * UNIT


def normal(key: np.ndarray, iteration: np.ndarray, slot: np.ndarray, stream: int) -> np.ndarray:
    """Standard normal draws (Box-Muller on streams ``stream`` and ``stream + 1``); arrays as ``bits``."""
    u1 = uniform(key, iteration, slot, stream)
    u2 = uniform(key, iteration, slot, stream + 1)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


def episode_keys(rng: np.random.Generator, n: int = 1) -> np.ndarray:
    """``n`` fresh 64-bit episode keys from a seeded generator."""
    return rng.integers(0, 2**63, size=n, dtype=np.int64).astype(np.uint64)
