"""The import direction of the apps: events -> messages -> campaign, never back.

Every import (module level or inside a function) and every model reference by label
("transactional.Delivery") between the three apps is read from the source with `ast`. The project
shell (settings, root URLs, the Celery app, wsgi/asgi) and the management commands compose the
apps and may import any of them; migrations are history. A cross-app import inside a function is
reported too: it is how a circle hides.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

RANK = {"events": 3, "messages": 2, "campaign": 1}
APP_LABELS = {"events": "events", "transactional": "messages", "campaign": "campaign"}
SHELL = {
    "campaign/urls.py",
    "campaign/settings.py",
    "campaign/celery.py",
    "campaign/wsgi.py",
    "campaign/asgi.py",
}
RELATIONS = {"ForeignKey", "OneToOneField", "ManyToManyField", "ForeignObject"}


@dataclass(frozen=True)
class Violation:
    path: str
    line: int
    target: str
    kind: str  # "up" (a wrong-way import or model reference) or "inside" (cross-app, in a function)

    def __str__(self) -> str:
        what = "goes up to" if self.kind == "up" else "imports inside a function"
        return f"{self.path}:{self.line} {what} {self.target}"


def _app_of(module: str) -> str | None:
    top = module.split(".")[0]
    return top if top in RANK else None


def _exempt(relative: str) -> bool:
    return relative in SHELL or "/migrations/" in relative or "/management/" in relative


def violations(root: Path) -> list[Violation]:
    found: list[Violation] = []
    for app in RANK:
        for path in sorted((root / app).rglob("*.py")):
            relative = path.relative_to(root).as_posix()
            if _exempt(relative):
                continue
            tree = ast.parse(path.read_text(), filename=relative)
            found.extend(_violations_in(tree, app, relative))
    return found


def _violations_in(tree: ast.AST, app: str, relative: str) -> list[Violation]:
    found: list[Violation] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        modules: list[str] = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
        for module in modules:
            target = _app_of(module)
            if target is None or target == app:
                continue
            if RANK[target] > RANK[app]:
                found.append(Violation(relative, node.lineno, module, "up"))
            if in_function:
                found.append(Violation(relative, node.lineno, module, "inside"))
        if isinstance(node, ast.Call) and _called_name(node) in RELATIONS:
            for argument in [*node.args[:1], *(k.value for k in node.keywords if k.arg == "to")]:
                if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
                    label = argument.value.split(".")[0]
                    target = APP_LABELS.get(label)
                    if "." in argument.value and target and RANK[target] > RANK[app]:
                        found.append(Violation(relative, node.lineno, argument.value, "up"))
        inside = in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        for child in ast.iter_child_nodes(node):
            visit(child, inside)

    visit(tree, False)
    return found


def _called_name(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    if isinstance(call.func, ast.Name):
        return call.func.id
    return None
