"""numba's on-disk cache of the compiled kernels, kept consistent with their sources.

numba recompiles a cached function when the file that defines it changes, but not when a function
or a constant it uses from *another* file does: papi_env.serve_kernels' cache holds the
sim.serve_kernels code it was compiled against, and a later change there would not reach it (a
working tree that pulls a fix then runs the old code, silently). So the kernels' sources
(``KERNEL_SOURCES``: the kernel modules and every module whose functions or constants they compile
in) are hashed, and when the hash differs from the stamp stored beside the caches, every numba
cache file of these packages is deleted before any kernel runs; numba then compiles afresh on first
use (about 20 s for all of them on 2 cores; ``python -m papi_env.precompile``) and the stamp is
rewritten. sim.kernels, which every kernel module imports, calls :func:`ensure_fresh` on import.

With ``NUMBA_CACHE_DIR`` set (for example by ``experiments.bench --startup``) the caller manages
the cache and nothing is done here; where the package's directories are read-only, neither.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KERNEL_SOURCES = (
    "sim/kernels.py", "sim/serve_kernels.py", "sim/random_streams.py", "papi_env/kernels.py",
    "papi_env/serve_kernels.py", "hardware/systems.py", "hardware/cost_tables.py", "hardware/specs.py",
)
"""Files whose code or constants the compiled kernels hold (relative to the project root)."""
STAMP = ROOT / "sim" / "__pycache__" / "kernel_sources.sha256"
_checked = False


def sources_hash() -> str:
    """sha256 over KERNEL_SOURCES' bytes, in order."""
    digest = hashlib.sha256()
    for name in KERNEL_SOURCES:
        digest.update(name.encode())
        digest.update((ROOT / name).read_bytes())
    return digest.hexdigest()


def cache_dirs() -> list[Path]:
    """The ``__pycache__`` directories numba writes the kernels' caches to."""
    return sorted({(ROOT / name).parent / "__pycache__" for name in KERNEL_SOURCES})


def ensure_fresh() -> bool:
    """Delete every numba cache file of the kernels' packages when their sources changed since
    the stamp was written (and write it); True when it did. Once per process."""
    global _checked
    if _checked or os.environ.get("NUMBA_CACHE_DIR"):
        return False
    _checked = True
    current = sources_hash()
    try:
        if STAMP.exists() and STAMP.read_text() == current:
            return False
        for folder in cache_dirs():
            for path in [*folder.glob("*.nbi"), *folder.glob("*.nbc")]:
                path.unlink(missing_ok=True)
        STAMP.parent.mkdir(exist_ok=True)
        tmp = STAMP.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(current)
        os.replace(tmp, STAMP)
    except OSError:  # a read-only installation: numba keeps its own user-wide cache there
        return False
    return True
