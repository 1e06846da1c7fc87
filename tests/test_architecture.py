"""The layering of docs/ARCHITECTURE.md holds: each layer imports only the layers above it, the
layers under agents/ import neither torch nor stable-baselines3, and no module imports another's
private names."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ("hardware", "sim", "papi_env", "agents", "experiments")  # each may import only earlier ones
NO_LEARNING = ("hardware", "sim", "papi_env")
LEARNING = ("torch", "stable_baselines3", "sb3_contrib")  # Ray may register the envs (papi_env.register_ray_envs)


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) of every import statement in the file, wherever it is (functions too)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.module, [alias.name for alias in node.names]))
    return out


def _modules(layer: str) -> list[Path]:
    return sorted((ROOT / layer).rglob("*.py"))


@pytest.mark.parametrize("layer", LAYERS)
def test_layers_import_only_the_layers_above(layer):
    allowed = set(LAYERS[:LAYERS.index(layer) + 1])
    wrong = []
    for path in _modules(layer):
        for module, _ in _imports(path):
            top = module.split(".")[0]
            if top in LAYERS and top not in allowed:
                wrong.append(f"{path.relative_to(ROOT)} imports {module}")
            if layer in NO_LEARNING and top in LEARNING:
                wrong.append(f"{path.relative_to(ROOT)} imports {module} (no learning libraries below agents/)")
    assert not wrong, "\n".join(wrong)


def test_no_module_imports_a_private_name():
    wrong = []
    for layer in LAYERS:
        for path in _modules(layer):
            for module, names in _imports(path):
                if module.split(".")[0] in LAYERS:
                    wrong += [f"{path.relative_to(ROOT)}: from {module} import {n}" for n in names
                              if n.startswith("_") and not n.startswith("__")]
    assert not wrong, "\n".join(wrong)


def test_decisions_and_experiments_read_no_private_attribute_of_another_object():
    """agents/ and experiments/ read envs, cores and models through public names only
    (``self._x`` and ``cls._x`` are their own)."""
    wrong = []
    for layer in ("agents", "experiments"):
        for path in _modules(layer):
            for node in ast.walk(ast.parse(path.read_text())):
                if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                        and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))):
                    wrong.append(f"{path.relative_to(ROOT)}:{node.lineno} .{node.attr}")
    assert not wrong, "\n".join(wrong)
