"""Which functions publish to Pub/Sub, read from the code rather than assumed.

A function publishes when its handler in functions/entrypoints.py reaches, through
the composition root functions/app.py (`app.X(...)`, and the builders a
handler imports, such as the api's `functions.api.wiring.build`), a builder
that constructs `PUBLISHER`. The renewer's outbox sweep only enqueues
publishing runs, so the renewer needs no publish role; the worker's runs
publish. `pubsub_check` grants roles/pubsub.publisher to exactly these.
"""

from __future__ import annotations

import ast
from pathlib import Path

PUBLISHER = "PubSubPublisher"


def publishing_entry_points(root: Path) -> set[str]:
    """Entry points (main.py names) whose handler can construct a publisher."""
    functions = root / "functions"
    app = _definitions(functions / "app.py")
    reaching = _reaching(app)
    handlers = _definitions(functions / "entrypoints.py")
    found: set[str] = set()
    for name, handler in handlers.items():
        used = _app_calls(handler)
        for node in ast.walk(handler):
            if isinstance(node, ast.ImportFrom) and node.module and \
                    node.module.startswith("functions.") and node.module != "functions.app":
                module = functions.joinpath(*node.module.split(".")[1:]).with_suffix(".py")
                imported = _definitions(module) if module.exists() else {}
                for alias in node.names:
                    if alias.name in imported:
                        used |= _app_calls(imported[alias.name])
        if used & reaching or _mentions(handler, PUBLISHER):
            found.add(name)
    return found


def _definitions(path: Path) -> dict[str, ast.FunctionDef]:
    tree = ast.parse(path.read_text())
    return {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}


def _reaching(app: dict[str, ast.FunctionDef]) -> set[str]:
    """The builders of app.py that construct a publisher, directly or through another."""
    calls = {name: {n.id for n in ast.walk(body) if isinstance(n, ast.Name) and n.id in app}
             for name, body in app.items()}
    reaching = {name for name, body in app.items() if _mentions(body, PUBLISHER)}
    changed = True
    while changed:
        grown = {name for name, called in calls.items() if called & reaching} | reaching
        changed, reaching = grown != reaching, grown
    return reaching


def _app_calls(function: ast.FunctionDef) -> set[str]:
    return {node.attr for node in ast.walk(function) if isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name) and node.value.id == "app"}


def _mentions(function: ast.FunctionDef, name: str) -> bool:
    return any((isinstance(n, ast.Name) and n.id == name)
               or (isinstance(n, ast.alias) and n.name == name) for n in ast.walk(function))
