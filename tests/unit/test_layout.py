"""The layout's rules, read from the imports (stdlib `ast`, every import statement,
including those inside functions and `TYPE_CHECKING` blocks):

1. only `functions/adapters/`, `app.py` and the API's and CLI's wiring import a
   Google library or an adapter; services see ports;
2. `model.py`, `ports.py` and `errors.py` (the vocabulary) import nothing of
   calsync but each other;
3. no import circles inside `functions/`.

Each rule is also shown to fail on a tree with a violation planted in it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "functions"
GOOGLE_ROOTS = ("google", "googleapiclient", "google_auth_oauthlib", "google_auth_httplib2",
                "grpc")
ADAPTERS = "functions.adapters"
# May import adapters and Google libraries: the adapters, the composition root,
# and the two wirings (the API's ports filled with adapters; the CLI's mapping of
# Google's exceptions to exit statuses).
WIRED = ("functions.app", "functions.api.wiring", "functions.cli.wiring")
VOCABULARY = ("functions.model", "functions.ports", "functions.errors")


def module_sources(root: Path = ROOT) -> dict[str, str]:
    """Every module of the package by dotted name (a package by its own name)."""
    sources = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        sources[".".join(parts)] = path.read_text()
    return sources


def imports_of(name: str, source: str, modules: Iterable[str]) -> set[str]:
    """Every module `name` imports: absolute names; for `from X import y`, `X.y`
    when that is a module of the package, else `X`."""
    known = set(modules)
    package = name if f"{name}.__init__" in known else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in known else base)
    return found


def violations(sources: Mapping[str, str]) -> list[str]:
    """Every broken rule, one line each."""
    graph = {name: {i for i in imports_of(name, src, sources) if i in sources and i != name}
             for name, src in sources.items()}
    raw = {name: imports_of(name, src, sources) for name, src in sources.items()}
    problems = []
    for name, imported in sorted(raw.items()):
        wired = name.startswith(ADAPTERS) or name in WIRED
        for target in sorted(imported):
            root = target.split(".")[0]
            if not wired and root in GOOGLE_ROOTS:
                problems.append(f"{name} imports the Google library {target}")
            if not wired and (target == ADAPTERS or target.startswith(ADAPTERS + ".")):
                problems.append(f"{name} imports the adapter {target}")
        if name in VOCABULARY:
            for target in sorted(graph[name]):
                if target not in VOCABULARY and target != PACKAGE:
                    problems.append(f"{name} (vocabulary) imports {target}")
    problems.extend(f"import circle: {' -> '.join(cycle)}" for cycle in _cycles(graph))
    return problems


def _cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component) + [sorted(component)[0]])

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_package_keeps_its_layout_rules() -> None:
    problems = violations(module_sources())
    assert not problems, "\n".join(problems)


def test_every_package_says_what_it_holds_and_may_import() -> None:
    for init in sorted((ROOT / PACKAGE).rglob("__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert "import" in doc.lower() and len(doc.splitlines()) >= 2, (
            f"{init.relative_to(ROOT)}: its docstring must say what it holds and may import")


# -- the rules can fail ------------------------------------------------------------

PLANTS = {
    "a service importing an adapter": (
        "functions.sync.engine", "from functions.adapters.firestore import store\n",
        "functions.sync.engine imports the adapter functions.adapters.firestore.store"),
    "a service importing a Google library": (
        "functions.lifecycle.renewer", "from google.cloud import firestore\n",
        "functions.lifecycle.renewer imports the Google library google.cloud"),
    "a lazy import inside a function": (
        "functions.intake.webhook",
        "def _later():\n    from functions.adapters.google import tasks\n",
        "functions.intake.webhook imports the adapter functions.adapters.google.tasks"),
    "the vocabulary importing a service": (
        "functions.ports", "from functions.sync import engine\n",
        "functions.ports (vocabulary) imports functions.sync.engine"),
    "a circle": (
        "functions.model", "from functions.ports import Publisher\n",
        "import circle: functions.model -> functions.ports -> functions.model"),
}


@pytest.mark.parametrize("plant", sorted(PLANTS))
def test_a_planted_violation_is_reported(plant: str) -> None:
    module, line, expected = PLANTS[plant]
    sources = module_sources()
    assert module in sources, f"{module} moved: update the plant"
    assert expected not in violations(sources)
    planted = dict(sources)
    planted[module] = sources[module] + "\n" + line
    assert expected in violations(planted)
