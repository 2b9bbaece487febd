"""The package's import structure: no import cycles, and no arrow from a lower layer up.

Read statically from the source: every import, the lazy ones inside functions (which keep
``lima --help`` instant) and those for type checkers only included, since each is a dependency
all the same.
"""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "limakit"

# Lower layers never import higher ones, wherever the import statement sits.
LAYERS = [
    {"limakit.core"},
    {"limakit.records"},
    {"limakit.sources", "limakit.models", "limakit.embeddings"},
    {"limakit.training", "limakit.generation"},
    {"limakit.judging"},  # every judge call: curation scores, ratings, evaluation's protocols
    {"limakit.evaluation", "limakit.curation"},
    {"limakit.annotate", "limakit.backtranslate", "limakit.run"},
    {"limakit.cli"},
]


def _modules() -> dict[str, Path]:
    out = {}
    for f in PKG.rglob("*.py"):
        parts = list(f.relative_to(PKG.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = f
    return out


def _imports(tree: ast.Module):
    """Every import statement of a module, at any depth."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        for node in _imports(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                assert node.level == 0, f"{path.name}: the package uses absolute imports only"
                src = node.module or ""
                # `from pkg import sub` needs pkg's namespace (its __init__) and the submodule.
                targets = [src] + [f"{src}.{a.name}" for a in node.names]
            graph[name] |= {t for t in targets if t in mods and t != name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                return stack[stack.index(m) :] + [m]
            if m not in state and (found := visit(m)):
                return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (found := visit(n)):
            return found
    return None


def _layer(module: str) -> int | None:
    for i, names in enumerate(LAYERS):
        if any(module == n or module.startswith(n + ".") for n in names):
            return i
    return None


def test_no_import_cycles():
    cycle = _cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_import_from_a_lower_layer_up():
    upward = [
        f"{a} -> {b}"
        for a, targets in _graph().items()
        for b in targets
        if _layer(a) is not None and _layer(b) is not None and _layer(b) > _layer(a)
    ]
    assert upward == []


def test_the_checker_sees_a_cycle_and_an_upward_arrow():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
    assert _layer("limakit.generation.engine") < _layer("limakit.evaluation.report")
    # imports inside functions count: a lazy import is a dependency all the same
    tree = ast.parse("def f():\n    from limakit.run import stages\n")
    assert [n.module for n in _imports(tree)] == ["limakit.run"]


# The training loop reads top to bottom in one sitting (nanoGPT style); everything else is split.
LONG_FUNCTION_ALLOWED = {"limakit.training.loop._train"}  # train() wraps it: threads restored


def test_no_function_over_100_lines_but_the_training_loop():
    long = []
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > 100 and f"{name}.{node.name}" not in LONG_FUNCTION_ALLOWED:
                    long.append(f"{name}.{node.name}: {lines} lines")
    assert long == []


def test_the_data_layers_do_not_import_torch():
    """Records and core are data: model surgery (the EOT's embedding rows) lives with the models."""
    heavy = []
    for name, path in _modules().items():
        if not name.startswith(("limakit.core", "limakit.records")):
            continue
        for node in _imports(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            heavy += [f"{name} -> {n}" for n in names if n and n.split(".")[0] == "torch"]
    assert heavy == []


def test_curation_and_evaluation_share_the_judging_component_not_each_other():
    """Both ask judges through ``limakit.judging``; neither reaches into the other."""
    across = [
        f"{a} -> {b}"
        for a, targets in _graph().items()
        for b in targets
        for x, y in (("curation", "evaluation"), ("evaluation", "curation"))
        if a.startswith(f"limakit.{x}") and b.startswith(f"limakit.{y}")
    ]
    assert across == []
