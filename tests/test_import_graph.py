"""The package's modules import each other as a tree: no cycles, counting the
imports inside functions and the type-only ones too (a late or type-only import
hides a cycle, it does not remove it)."""

import ast
import pathlib

import jaxcheck

PACKAGE = pathlib.Path(jaxcheck.__file__).parent


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: pathlib.Path, modules: set[str]) -> set[str]:
    """The package modules that `path` imports, anywhere in the file."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    tree = ast.parse(path.read_text())
    # Imports under `if TYPE_CHECKING:` count too: a module that needs another's
    # types to be read depends on it as much as one that calls it.
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {t for t in targets if t in modules and t != name}
    return found


def import_graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {_module_name(p) for p in paths}
    graph = {_module_name(p): _imports(p, modules) for p in paths}
    # The package itself only re-exports; importing it from a module means
    # importing what it re-exports, which the module names directly instead.
    return {m: deps - {"jaxcheck"} for m, deps in graph.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return stack[stack.index(dep) :] + [dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_package_has_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " → ".join(cycle)


def test_the_cycle_finder_finds_a_planted_cycle():
    graph = import_graph()
    graph["jaxcheck._engine.compare"] = graph["jaxcheck._engine.compare"] | {
        "jaxcheck._checks.grad"
    }
    cycle = find_cycle(graph)
    assert cycle is not None and cycle[0] == cycle[-1]


def test_relative_imports_inside_functions_are_seen():
    graph = import_graph()
    # `_report.plot` imports `_plot` inside the method.
    assert "jaxcheck._verdict.plot" in graph["jaxcheck._verdict.report"]


# The stages, bottom first: a module imports only from its own stage or below,
# so the pipeline reads top to bottom and no helper reaches back up.
STAGES = (
    "_version",
    "_tree",
    "_runtime",
    "_base",
    "_engine",
    "_verdict",
    "_checks",
    "_tools",
)


def _stage(module: str) -> int:
    """The module's stage, counted from the bottom; the package root is on top,
    and -1 marks a module outside every stage."""
    parts = module.split(".")
    if len(parts) == 1:
        return len(STAGES)
    return STAGES.index(parts[1]) if parts[1] in STAGES else -1


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{module} → {dep}"
        for module, deps in graph.items()
        for dep in deps
        if _stage(dep) > _stage(module)
    )


def test_every_module_lives_in_a_stage():
    strays = [m for m in import_graph() if _stage(m) == -1]
    assert strays == []


def test_no_stage_imports_from_a_stage_above_it():
    assert upward_imports(import_graph()) == []


def test_the_stage_check_finds_a_planted_upward_import():
    graph = import_graph()
    graph["jaxcheck._engine.compare"] |= {"jaxcheck._verdict.report"}
    assert upward_imports(graph) == [
        "jaxcheck._engine.compare → jaxcheck._verdict.report"
    ]
