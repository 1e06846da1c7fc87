"""sim.jit_cache: numba caches of the kernels are dropped when any source they compile in changes."""

import ast

from sim import jit_cache


def test_stale_caches_are_deleted_once_and_the_stamp_rewritten(tmp_path, monkeypatch):
    caches = tmp_path / "__pycache__"
    caches.mkdir()
    files = [caches / "serve_kernels.iterate-1.py311.nbi", caches / "serve_kernels.iterate-1.py311.1.nbc"]
    other = caches / "serve_kernels.cpython-311.pyc"
    for f in [*files, other]:
        f.write_text("x")
    stamp = caches / "kernel_sources.sha256"
    stamp.write_text("an older hash")
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setattr(jit_cache, "STAMP", stamp)
    monkeypatch.setattr(jit_cache, "cache_dirs", lambda: [caches])
    monkeypatch.setattr(jit_cache, "_checked", False)
    assert jit_cache.ensure_fresh() and not any(f.exists() for f in files) and other.exists()
    assert stamp.read_text() == jit_cache.sources_hash()
    for f in files:  # compiled again: kept while the sources stay the same
        f.write_text("x")
    monkeypatch.setattr(jit_cache, "_checked", False)
    assert not jit_cache.ensure_fresh() and all(f.exists() for f in files)
    monkeypatch.setattr(jit_cache, "_checked", False)
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))  # a cache the caller manages: left alone
    stamp.write_text("an older hash")
    assert not jit_cache.ensure_fresh() and all(f.exists() for f in files)


def test_every_project_module_a_kernel_imports_is_hashed():
    """A kernel compiles in the functions and constants it imports; each such module's source is in
    KERNEL_SOURCES, so a change to it drops the caches."""
    kernels = [s for s in jit_cache.KERNEL_SOURCES if s.endswith("kernels.py")]
    for source in kernels:
        tree = ast.parse((jit_cache.ROOT / source).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in (
                    "sim", "papi_env", "hardware"):
                names = [node.module] if node.module.count(".") else [f"{node.module}.{a.name}" for a in node.names]
                for name in names:
                    if name == "sim.jit_cache":
                        continue
                    assert name.replace(".", "/") + ".py" in jit_cache.KERNEL_SOURCES, (source, name)
