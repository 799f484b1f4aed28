"""The library's layers hold: every import of a zsg module, at the top or inside a function, goes to
a lower layer of `zsg_core.LAYERS`, and an import inside a function has a reason to be there."""
from __future__ import annotations

import ast
from pathlib import Path

import zsg_core

PACKAGE = Path(zsg_core.__file__).parent
# Modules whose functions import other zsg modules, and why: each would otherwise pull torch into an
# import that does not need it.
IMPORTS_IN_FUNCTIONS = {
    "cli": "each command imports what it runs, so `zsg --help` and `zsg prepare --list` start at once",
    "features": "only the LM's features need the model and torch; MiniLM's features and `arrange` do not",
}


def layer_of() -> dict[str, int]:
    return {module: i for i, layer in enumerate(zsg_core.LAYERS) for module in layer}


def violations(module: str, source: str, layers: dict[str, int]) -> list[str]:
    """What in `source` (the module `module`) breaks the layers: an import of a zsg module that is
    not in a lower layer, an import inside a function where `IMPORTS_IN_FUNCTIONS` gives no reason,
    and an import inside a function of what the module already imports at the top."""
    tree = ast.parse(source)
    at_top = {_imported(node) for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))}
    in_functions = {id(node) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                    for node in ast.walk(f) if isinstance(node, (ast.Import, ast.ImportFrom))}
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        target = _zsg_module(node)
        where = f"{module}.py:{node.lineno}"
        if target is not None:
            if target not in layers:
                found.append(f"{where} imports {target}, which no layer lists")
            elif layers[target] >= layers[module]:
                found.append(f"{where} imports {target} (layer {layers[target]}), not below {module} (layer {layers[module]})")
            if id(node) in in_functions and module not in IMPORTS_IN_FUNCTIONS:
                found.append(f"{where} imports {target} inside a function")
        if id(node) in in_functions and _imported(node) in at_top:
            found.append(f"{where} imports {_imported(node)} again inside a function")
    return found


def _imported(node: ast.Import | ast.ImportFrom) -> str:
    if isinstance(node, ast.Import):
        return ",".join(sorted(a.name for a in node.names))
    return "." * node.level + (node.module or "")


def _zsg_module(node: ast.Import | ast.ImportFrom) -> str | None:
    """The zsg module an import reaches, if any (`from . import x` reaches x)."""
    if isinstance(node, ast.ImportFrom) and node.level == 1:
        return node.module or node.names[0].name
    name = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
    if name and name.startswith("zsg_core."):
        return name.split(".")[1]
    return None


def test_every_module_sits_in_one_layer():
    listed = [m for layer in zsg_core.LAYERS for m in layer]
    assert len(listed) == len(set(listed)), "a module is listed twice"
    assert set(listed) == {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}


def test_every_import_goes_down_the_layers():
    layers = layer_of()
    found = [v for p in sorted(PACKAGE.glob("*.py")) if p.stem != "__init__"
             for v in violations(p.stem, p.read_text(), layers)]
    assert not found, "\n".join(found)


def test_the_check_finds_each_kind_of_violation():
    layers = {"low": 0, "high": 1}
    upward = "from .high import x\n"
    assert violations("low", upward, layers) == ["low.py:1 imports high (layer 1), not below low (layer 0)"]
    assert violations("low", "from zsg_core.high import x\n", layers)[0].startswith("low.py:1 imports high")
    assert violations("high", "import json\ndef f():\n    from .low import y\n", layers) == [
        "high.py:3 imports low inside a function"]
    assert violations("high", "import json\ndef f():\n    import json\n", layers) == [
        "high.py:3 imports json again inside a function"]
    assert violations("high", "from .nowhere import z\n", layers) == ["high.py:1 imports nowhere, which no layer lists"]
    assert violations("high", "from .low import y\nimport numpy\n", layers) == []
