"""The package's shape: rooms by the data's path, no import cycle, no private name across modules.

Every ``import`` counts, including those inside functions (they are how optional libraries stay
lazy, not a way around the layering).
"""

import ast
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SOURCE / "nnfit"

# Who may import whom: a module may import its own room, the rooms below it and the ground floor.
GROUND = {"nnfit.errors", "nnfit.files", "nnfit.schema", "nnfit.display", "nnfit.plot"}
# The faces; the HTML report is written by ``fit.report()`` as summaries and plots are, so it
# lives beside them, and ``nnfit report`` is its face.
FACES = {"nnfit.cli", "nnfit.sklearn", "nnfit.labs"}


def module_name(path: Path) -> str:
    parts = path.relative_to(SOURCE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}


def imports(name: str) -> list:
    """(imported module, imported names) for every import in the module, at any depth."""
    path = MODULES[name]
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if not base.startswith("nnfit"):
                continue
            for alias in node.names:
                target = f"{base}.{alias.name}"
                found.append((target, None) if target in MODULES else (base, alias.name))
        elif isinstance(node, ast.Import):
            found += [(alias.name, None) for alias in node.names if alias.name.startswith("nnfit")]
    return found


GRAPH = {name: {target for target, _ in imports(name) if target in MODULES and target != name} for name in MODULES}


def room(name: str) -> str:
    for prefix in ("nnfit.design", "nnfit.train", "nnfit.modules", "nnfit.labs"):
        if name == prefix or name.startswith(prefix + "."):
            return prefix
    return name


def cycles() -> list:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    return found


def test_the_rooms_exist():
    assert {"nnfit.design", "nnfit.modules", "nnfit.train"} <= set(MODULES)
    assert {"nnfit.train.loop", "nnfit.train.hooks", "nnfit.train.monitor", "nnfit.train.closed_form",
            "nnfit.train.divergence", "nnfit.train.checkpoints", "nnfit.train.learner"} <= set(MODULES)


def test_there_is_no_import_cycle_counting_imports_inside_functions():
    assert cycles() == []


def test_no_private_name_is_imported_from_another_module():
    crossing = [(name, target, imported) for name in MODULES for target, imported in imports(name)
                if imported and imported.startswith("_") and not imported.startswith("__") and room(target) != room(name)]
    assert crossing == []


@pytest.mark.parametrize("lower, upper", [
    ("nnfit.design", {"nnfit.train", "nnfit.modules", "nnfit.mlpfit", "nnfit.tuning"}),
    ("nnfit.modules", {"nnfit.train", "nnfit.design", "nnfit.mlpfit"}),
    ("nnfit.train", {"nnfit.design", "nnfit.mlpfit", "nnfit.tuning", "nnfit.intervals", "nnfit.summaries"}),
])
def test_each_room_imports_nothing_above_it(lower, upper):
    """The loop works on tensors and modules (never formulas); the design never imports the loop."""
    reached = sorted((name, target) for name in MODULES if room(name) == lower for target in GRAPH[name]
                     if room(target) in upper or target in FACES)
    assert reached == []


def test_the_ground_floor_and_the_rooms_below_the_faces_never_import_the_faces():
    reached = sorted((name, target) for name in MODULES if room(name) not in FACES and name not in FACES
                     for target in GRAPH[name] if room(target) in FACES and room(target) != room(name))
    assert reached == []
    for name in GROUND:
        assert {room(target) for target in GRAPH[name]} <= GROUND | {"nnfit"}, name
