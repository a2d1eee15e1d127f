"""The layers of docs/architecture.md hold in the code of ivr/ and workers/.

The map is read from the doc's own table, so the doc and this check cannot drift apart:
a module imports only from its layer and the layers below it, and a layer never reaches
the libraries its row rules out, itself or through the modules of ours it imports. The
imports are read with `ast`, everywhere in a file (inside functions, under TYPE_CHECKING).
"""

from __future__ import annotations

import ast
import re
from collections import deque
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MAP = REPO / "docs" / "architecture.md"
PACKAGES = ("ivr", "workers")
ONE_SCREEN = 60  # lines


@dataclass(frozen=True)
class Layer:
    name: str
    rank: int  # 0 is the bottom
    never: frozenset[str]  # libraries (top-level names) the layer must not reach


def read_map(text: str) -> dict[str, Layer]:
    """Each module of the doc's table (a row may name a few), with its layer: the bold row
    above it."""
    layer_of: dict[str, Layer] = {}
    layer = None
    ranks = 0
    for line in text.splitlines():
        if not line.startswith("|"):
            continue
        first, rest = (cell.strip() for cell in line.strip().strip("|").split("|", 1))
        if heading := re.fullmatch(r"\*\*(\w+)\*\*", first):
            never = re.search(r"never imports (.*)", rest)
            layer = Layer(heading[1], ranks, frozenset(re.findall(r"`(\w+)`", never[1])
                                                       if never else ()))
            ranks += 1
        elif re.fullmatch(r"`[\w.]+`(, `[\w.]+`)*", first):  # one module, or a few together
            for module in re.findall(r"`([\w.]+)`", first):
                assert layer is not None, f"{module} comes before any layer"
                layer_of[module] = layer
    return layer_of


def our_modules() -> dict[str, Path]:
    """Every module of ivr/ and workers/ by its dotted name (a package by its own name)."""
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports_of(module: str, source: str, ours: set[str], package: bool = False) -> set[str]:
    """What `module` imports: a module of ours by its dotted name, any other by its
    top-level name (`flask.helpers` -> `flask`)."""
    here = module if package else module.rpartition(".")[0]
    named = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            named.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # from . import x, from ..y import z
                parent = here.split(".")[: len(here.split(".")) - node.level + 1]
                base = ".".join([*parent, *([node.module] if node.module else [])])
            for alias in node.names:  # `from ivr import store` names the module ivr.store
                named.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in ours else base)
    found = set()
    for name in named:
        prefixes = [".".join(name.split(".")[:i]) for i in range(name.count(".") + 1, 0, -1)]
        found.add(next((p for p in prefixes if p in ours), name.split(".")[0]))
    return found - {module}


def import_graph() -> dict[str, set[str]]:
    """Each module of ours (but an empty package file) -> what it imports."""
    modules = our_modules()
    ours = set(modules)
    return {name: imports_of(name, path.read_text(encoding="utf-8"), ours,
                             path.name == "__init__.py")
            for name, path in modules.items() if path.read_text(encoding="utf-8").strip()}


def upward_imports(graph: dict[str, set[str]], layer_of: dict[str, Layer]) -> list[str]:
    """Each import of a module of a higher layer, said as the doc would say it."""
    return sorted(
        f"{module} ({layer_of[module].name}) imports {other} ({layer_of[other].name})"
        for module, imported in graph.items() for other in imported
        if other in layer_of and layer_of[other].rank > layer_of[module].rank)


def forbidden_reaches(graph: dict[str, set[str]], layer_of: dict[str, Layer]) -> list[str]:
    """Each library a module's layer rules out that the module reaches, with the path."""
    found = []
    for module in graph:
        never = layer_of[module].never
        path_to = {module: [module]}  # breadth first: the shortest path to each library
        queue = deque([module])
        while queue:
            current = queue.popleft()
            for other in sorted(graph.get(current, ())):
                if other in graph:
                    if other not in path_to:
                        path_to[other] = [*path_to[current], other]
                        queue.append(other)
                elif other in never and other not in path_to:
                    path_to[other] = [*path_to[current], other]
                    found.append(f"{module} ({layer_of[module].name}) reaches "
                                 + " -> ".join(path_to[other]))
    return sorted(found)


# --- the map and the code ------------------------------------------------------------------


def test_the_map_fits_on_one_screen():
    assert len(MAP.read_text(encoding="utf-8").splitlines()) <= ONE_SCREEN


def test_every_module_is_on_the_map_and_every_module_on_it_exists():
    mapped, found = set(read_map(MAP.read_text(encoding="utf-8"))), set(import_graph())
    assert sorted(found - mapped) == [], "modules missing from docs/architecture.md"
    assert sorted(mapped - found) == [], "docs/architecture.md names modules that are gone"


def test_no_module_imports_one_of_a_higher_layer():
    assert upward_imports(import_graph(), read_map(MAP.read_text(encoding="utf-8"))) == []


def test_no_layer_reaches_a_library_it_rules_out():
    assert forbidden_reaches(import_graph(), read_map(MAP.read_text(encoding="utf-8"))) == []


def test_the_engine_vocabulary_and_tally_stay_free_of_flask_redis_rq_twilio_werkzeug():
    """What the issue promised, pinned: the doc's pure row cannot quietly lose a library."""
    layer_of = read_map(MAP.read_text(encoding="utf-8"))
    for module in ("ivr.vocabulary", "ivr.menu", "ivr.flow", "ivr.call_record", "ivr.tally"):
        assert layer_of[module].never >= {"flask", "redis", "rq", "twilio", "werkzeug"}, module


# --- the check itself, on made-up code ----------------------------------------------------

PURE = Layer("pure", 0, frozenset({"flask", "redis"}))
REDIS = Layer("redis", 1, frozenset({"flask"}))
WEB = Layer("web", 2, frozenset())
MADE_UP_MAP = {"ivr.flow": PURE, "ivr.menu": PURE, "ivr.store": REDIS, "ivr.voice": WEB}


def test_the_map_is_read_with_each_modules_layer_and_its_ruled_out_libraries():
    text = """
| module | what it owns |
|---|---|
| **pure** | never imports `flask`, `redis`: tested without a server |
| `ivr.flow` | the engine |
| **web** | Flask: the app |
| `ivr` | `create_app()` |
"""
    assert read_map(text) == {"ivr.flow": Layer("pure", 0, frozenset({"flask", "redis"})),
                              "ivr": Layer("web", 1, frozenset())}


def test_imports_are_found_in_functions_under_type_checking_and_relative():
    source = """
from typing import TYPE_CHECKING
import xml.etree.ElementTree as ET
from ivr import menu, create_app
from ivr.vocabulary import EventKind
from . import speech
if TYPE_CHECKING:
    from ivr.store import Store
def later():
    from flask.helpers import get_debug_flag
"""
    ours = {"ivr", "ivr.flow", "ivr.menu", "ivr.vocabulary", "ivr.speech", "ivr.store"}
    assert imports_of("ivr.flow", source, ours) == {
        "typing", "xml", "ivr.menu", "ivr", "ivr.vocabulary", "ivr.speech", "ivr.store",
        "flask"}


def test_an_upward_import_is_caught():
    graph = {"ivr.flow": {"ivr.menu", "ivr.voice"}, "ivr.menu": set(),
             "ivr.store": {"ivr.flow"}, "ivr.voice": {"ivr.store", "flask"}}
    assert upward_imports(graph, MADE_UP_MAP) == ["ivr.flow (pure) imports ivr.voice (web)"]


def test_a_library_reached_through_a_module_of_the_same_layer_is_caught():
    graph = {"ivr.flow": {"ivr.menu"}, "ivr.menu": {"redis"},
             "ivr.store": {"redis"}, "ivr.voice": {"flask", "ivr.store"}}
    assert upward_imports(graph, MADE_UP_MAP) == []
    assert forbidden_reaches(graph, MADE_UP_MAP) == [
        "ivr.flow (pure) reaches ivr.flow -> ivr.menu -> redis",
        "ivr.menu (pure) reaches ivr.menu -> redis",
    ]


def test_the_real_code_with_one_bad_import_added_fails():
    """The whole check, on today's graph plus `import flask` in the flow engine."""
    graph = import_graph()
    graph["ivr.flow"] = graph["ivr.flow"] | {"flask", "ivr.voice"}
    layer_of = read_map(MAP.read_text(encoding="utf-8"))
    assert "ivr.flow (pure) imports ivr.voice (web)" in upward_imports(graph, layer_of)
    reaches = forbidden_reaches(graph, layer_of)
    assert "ivr.flow (pure) reaches ivr.flow -> flask" in reaches
    assert "ivr.twiml (twilio) reaches ivr.twiml -> ivr.flow -> flask" in reaches
