"""Rules of the house kept by a test, in the spirit of diffusers' utils/check_repo.py.

Every module's source is read with ``ast`` (nothing is imported but hymotion.shared.protocol's registry), and each rule
fails naming the file, the line and what to do:

* the add-on (hymotion_addon) never reaches torch or any other backend dependency Blender's Python lacks, directly or
  through the hymotion modules it imports, followed transitively: the backend wheel is installed into Blender without
  its dependencies, and Blender ships numpy only;
* the backend (backend/hymotion) never imports Blender's modules;
* the add-on's core (hymotion_addon/core) never reaches Blender's modules either, directly, through each other or
  through the packages above it, so plain Python can import and test it (tests/addon);
* a protocol message is made only by hymotion/shared/protocol.py: message classes are defined there alone, no other
  module writes a message as a dict (``{"type": "generate", ...}``), and modules that speak the protocol turn lines into
  messages with protocol.encode / decode_request / decode_event, never with json;
* no two functions anywhere in the repository (tests and tools included) have the same body, once docstrings,
  argument annotations and the function's own name are set aside: one definition of each thing;
* a section comment has one style everywhere: ``# --- title ---...``;
* the rooms stay readable: no import cycles among the project's modules, no module over 700 lines unless its first
  lines say why (``# Longer than 700 lines: <reason>``), the add-on imports the backend only from its light package
  ``hymotion.shared`` (the part shipped to Blender in the wheel), and no module imports another's ``_private`` names.

Imports under ``if TYPE_CHECKING:`` never run and are skipped; imports inside functions count, since they run when the
function is called, and so do ``importlib.import_module("name")`` calls with a literal name. Every exception is listed
below with its reason, and an exception that no longer applies fails the test, so the lists cannot go stale.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from collections import defaultdict
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
BACKEND_ROOT = REPO_ROOT / "backend"
PACKAGES = {"hymotion": BACKEND_ROOT / "hymotion", "hymotion_addon": REPO_ROOT / "hymotion_addon"}
BLENDER_MODULES = frozenset({
    "bpy", "bpy_extras", "bpy_types", "bmesh", "mathutils", "bl_math", "blf", "bgl", "gpu", "gpu_extras", "aud",
    "idprop", "imbuf", "freestyle", "bl_ui", "bl_operators", "rna_prop_ui", "addon_utils",
})
# Import names of distributions whose name differs from the module they install.
IMPORT_NAMES = {"pyyaml": "yaml", "nvidia-ml-py": "pynvml"}
# What Blender's own Python provides besides the standard library.
IN_BLENDER = frozenset({"numpy"}) | BLENDER_MODULES

# Functions allowed to import Blender inside the backend, with the reason. An entry that no longer imports Blender
# fails the test, so this list cannot go stale.
BACKEND_BLENDER_IMPORTS: dict[tuple[str, str], str] = {}
# Modules that speak the protocol but need json for something else, with the reason (stale entries fail).
JSON_IN_PROTOCOL_MODULES: dict[str, str] = {}
# Known pairs of equal function bodies, with the reason (stale entries fail). Keys are sorted "path:function" pairs.
SAME_BODY_PAIRS: dict[tuple[str, str], str] = {}
# Bodies smaller than this many AST nodes may repeat: a one-line check such as an operator's ``poll`` (5 nodes in
# retarget_ui) belongs to each class.
MIN_BODY_NODES = 10
# Where the same-body rule looks: everything written in Python here, tests and tools included.
SOURCE_FOLDERS = ("backend", "hymotion_addon", "tests", "benchmarks", "scripts")


@dataclass(frozen=True)
class Import:
    module: str  # absolute dotted name
    line: int
    function: str  # the enclosing function's name, "" at module level


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    tree: ast.Module

    @property
    def package(self) -> str:
        return self.name if self.path.name == "__init__.py" else self.name.rpartition(".")[0]

    def where(self, line: int) -> str:
        return f"{self.path.relative_to(REPO_ROOT)}:{line}"


@cache
def modules() -> dict[str, Module]:
    found = {}
    for package, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            name = ".".join((package,) + (parts[:-1] if parts[-1] == "__init__" else parts))
            found[name] = Module(name, path, ast.parse(path.read_text(encoding="utf-8"), str(path)))
    return found


class _ImportCollector(ast.NodeVisitor):
    def __init__(self, module: Module) -> None:
        self.module = module
        self.function = ""
        self.imports: list[Import] = []

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        outer, self.function = self.function, self.function or node.name
        self.generic_visit(node)
        self.function = outer

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        if (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
            isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
        ):
            for statement in node.orelse:
                self.visit(statement)
            return
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.imports.append(Import(alias.name, node.lineno, self.function))

    def visit_Call(self, node: ast.Call) -> None:
        """importlib.import_module("name") and __import__("name") with a literal name import it too."""
        function = node.func
        called = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", "")
        if called in {"import_module", "__import__"} and node.args and isinstance(node.args[0], ast.Constant):
            if isinstance(node.args[0].value, str) and not node.args[0].value.startswith("."):
                self.imports.append(Import(node.args[0].value, node.lineno, self.function))
        self.generic_visit(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = self.module.package.split(".")
            base = base[: len(base) - (node.level - 1)]
            target = ".".join(base + ([node.module] if node.module else []))
        else:
            target = node.module or ""
        submodules = [f"{target}.{alias.name}" for alias in node.names if f"{target}.{alias.name}" in modules()]
        if len(submodules) < len(node.names):  # names from the module itself, not only its submodules
            self.imports.append(Import(target, node.lineno, self.function))
        for submodule in submodules:  # "from package import submodule" runs the submodule (and the package) too
            self.imports.append(Import(submodule, node.lineno, self.function))


@cache
def imports_of(name: str) -> tuple[Import, ...]:
    collector = _ImportCollector(modules()[name])
    collector.visit(modules()[name].tree)
    return tuple(collector.imports)


def internal_modules_run_by(name: str) -> list[str]:
    """The project's modules that importing ``name`` runs: the module and every package above it."""
    parts = name.split(".")
    return [".".join(parts[:end]) for end in range(1, len(parts) + 1) if ".".join(parts[:end]) in modules()]


def external_reach(start: str) -> dict[str, list[str]]:
    """Top-level external modules that importing ``start`` can run, each with one chain of imports leading to it."""
    chains: dict[str, list[str]] = {}
    seen: set[str] = set()
    queue: list[tuple[str, list[str]]] = [(name, []) for name in internal_modules_run_by(start)]
    while queue:
        name, chain = queue.pop(0)
        if name in seen:
            continue
        seen.add(name)
        for imported in imports_of(name):
            step = chain + [f"{modules()[name].where(imported.line)} imports {imported.module}"]
            internal = internal_modules_run_by(imported.module)
            if internal:
                queue.extend((module, step) for module in internal if module not in seen)
            else:
                chains.setdefault(imported.module.split(".")[0], step)
    return chains


def backend_dependencies(leaving_out: frozenset[str] = frozenset()) -> set[str]:
    """Import names of the backend's dependencies (pyproject.toml), required and optional but the extras named in
    ``leaving_out``."""
    project = tomllib.loads((BACKEND_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    requirements = list(project["dependencies"])
    for extra, listed in project.get("optional-dependencies", {}).items():
        if extra not in leaving_out:
            requirements += listed
    names = {re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].strip().lower() for requirement in requirements}
    return {IMPORT_NAMES.get(name, name.replace("-", "_")) for name in names}


def test_the_dependency_list_is_read():
    """Guards the rule below against reading nothing: torch, numpy and diffusers are backend dependencies, scipy a
    test one (the references the tests check the backend's own filters and rotations against)."""
    assert {"torch", "scipy", "numpy", "diffusers"} <= backend_dependencies()


def test_the_addon_never_reaches_a_backend_dependency_blender_lacks():
    forbidden = backend_dependencies() - IN_BLENDER
    found: dict[str, list[str]] = {}  # the import line that reaches a forbidden module -> one chain leading to it
    for name in sorted(modules()):
        if name.startswith("hymotion_addon"):
            for external, chain in external_reach(name).items():
                if external in forbidden:
                    found.setdefault(chain[-1], chain)
    problems = [" <- ".join(reversed(chain)) for chain in found.values()]
    assert not problems, (
        "The add-on runs in Blender's Python, which has numpy but none of the backend's other dependencies; import "
        "only hymotion's light modules there (or move the heavy import into the backend):\n  " + "\n  ".join(problems)
    )


def test_the_backend_never_imports_blender():
    problems, used = [], set()
    for name, module in sorted(modules().items()):
        if not name.startswith("hymotion."):
            continue
        for imported in imports_of(name):
            blender = imported.module.split(".")[0] in BLENDER_MODULES or imported.module.startswith("hymotion_addon")
            if not blender:
                continue
            key = (name, imported.function)
            if key in BACKEND_BLENDER_IMPORTS:
                used.add(key)
                continue
            problems.append(f"{module.where(imported.line)} imports {imported.module}")
    assert not problems, (
        "The backend runs without Blender: move this code into hymotion_addon (it may import the backend's light "
        "modules), or allow-list it in BACKEND_BLENDER_IMPORTS with its reason:\n  " + "\n  ".join(problems)
    )
    stale = set(BACKEND_BLENDER_IMPORTS) - used
    assert not stale, f"These entries import Blender no more; delete them from BACKEND_BLENDER_IMPORTS: {stale}"


def test_the_backend_never_imports_scipy():
    """scipy is a test dependency only (the reference for the backend's own filter and rotations): transformers imports
    scipy.optimize wherever scipy is installed, 0.7 s of the backend's start on the lent H100 (docs/performance.md)."""
    assert "scipy" not in backend_dependencies(leaving_out=frozenset({"test"})), "scipy is a runtime dependency again"
    problems = [f"{module.where(imported.line)} imports {imported.module}"
                for name, module in sorted(modules().items()) if name.startswith("hymotion.")
                for imported in imports_of(name) if imported.module.split(".")[0] == "scipy"]
    assert not problems, "The backend imports scipy, which users' backends lack:\n  " + "\n  ".join(problems)


CORE_PACKAGE = "hymotion_addon.core"


def test_the_addon_core_never_reaches_blender():
    core = [name for name in sorted(modules()) if name == CORE_PACKAGE or name.startswith(CORE_PACKAGE + ".")]
    assert len(core) > 1, f"{CORE_PACKAGE} and its modules are where this rule looks"
    found: dict[str, list[str]] = {}
    for name in core:
        for external, chain in external_reach(name).items():
            if external in BLENDER_MODULES:
                found.setdefault(chain[-1], chain)
    problems = [" <- ".join(reversed(chain)) for chain in found.values()]
    assert not problems, (
        f"{CORE_PACKAGE} runs without Blender (tests/addon imports it in plain Python): move the code that needs bpy "
        "to a module of hymotion_addon/ beside it, or import bpy there lazily:\n  " + "\n  ".join(problems)
    )


@cache
def protocol_registry() -> tuple[frozenset[str], frozenset[str]]:
    """(message class names, message ``type`` values), from hymotion.shared.protocol itself."""
    sys.path.insert(0, str(BACKEND_ROOT))
    try:
        from hymotion.shared import protocol
    finally:
        sys.path.remove(str(BACKEND_ROOT))
    classes = {**protocol.REQUEST_TYPES, **protocol.EVENT_TYPES}
    names = {cls.__name__ for cls in classes.values()} | {"Message", "Request", "Event"}
    return frozenset(names), frozenset(classes)


def protocol_module_names(module: Module) -> tuple[set[str], set[str]]:
    """(names bound to protocol message classes, names bound to the protocol module) in ``module``."""
    message_classes, _ = protocol_registry()
    classes, aliases = set(), set()
    for node in ast.walk(module.tree):
        if isinstance(node, ast.ImportFrom):
            resolved = node.module or ""
            if node.level:
                base = module.package.split(".")
                resolved = ".".join(base[: len(base) - (node.level - 1)] + ([node.module] if node.module else []))
            for alias in node.names:
                if resolved == "hymotion.shared.protocol" and alias.name in message_classes:
                    classes.add(alias.asname or alias.name)
                if resolved == "hymotion.shared" and alias.name == "protocol":
                    aliases.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            aliases.update(
                alias.asname for alias in node.names if alias.name == "hymotion.shared.protocol" and alias.asname
            )
    return classes, aliases


def speaks_protocol(name: str) -> bool:
    return any(imported.module == "hymotion.shared.protocol" for imported in imports_of(name))


def test_protocol_messages_are_made_only_in_protocol_py():
    message_classes, message_types = protocol_registry()
    problems, json_used = [], set()
    for name, module in sorted(modules().items()):
        if name == "hymotion.shared.protocol":
            continue
        classes, aliases = protocol_module_names(module)
        for node in ast.walk(module.tree):
            if isinstance(node, ast.ClassDef):
                for base in node.bases:
                    inherited = (isinstance(base, ast.Name) and base.id in classes) or (
                        isinstance(base, ast.Attribute) and isinstance(base.value, ast.Name)
                        and base.value.id in aliases and base.attr in message_classes
                    )
                    if inherited:
                        problems.append(f"{module.where(node.lineno)} defines message class {node.name}: "
                                        "define every message in hymotion/shared/protocol.py")
            if isinstance(node, ast.Dict):
                for key, value in zip(node.keys, node.values):
                    if (isinstance(key, ast.Constant) and key.value == "type" and isinstance(value, ast.Constant)
                            and value.value in message_types):
                        problems.append(f"{module.where(node.lineno)} writes a {value.value!r} message as a dict: "
                                        "build the message class and send protocol.encode(message)")
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "json"
                    and speaks_protocol(name)):
                if name in JSON_IN_PROTOCOL_MODULES:
                    json_used.add(name)
                    continue
                problems.append(f"{module.where(node.lineno)} calls json.{node.func.attr} in a module that speaks the "
                                "protocol: lines become messages only through protocol.encode / decode_request / "
                                "decode_event")
    assert not problems, "Protocol messages are made only in hymotion/shared/protocol.py:\n  " + "\n  ".join(problems)
    stale = set(JSON_IN_PROTOCOL_MODULES) - json_used
    assert not stale, f"These modules use json no more; delete them from JSON_IN_PROTOCOL_MODULES: {stale}"


def _normalised(node: object, own_name: str) -> str:
    """ast.dump without what does not change behaviour (annotations of arguments) and with the function's own name
    replaced, so a copy under another name matches."""
    if isinstance(node, ast.Name):
        return "Name(__self__)" if node.id == own_name else f"Name({node.id})"
    if isinstance(node, ast.arg):
        return f"arg({node.arg})"
    if isinstance(node, ast.AST):
        fields = ",".join(f"{key}={_normalised(value, own_name)}" for key, value in ast.iter_fields(node))
        return f"{type(node).__name__}({fields})"
    if isinstance(node, list):
        return "[" + ",".join(_normalised(item, own_name) for item in node) + "]"
    return repr(node)


def body_fingerprint(function: ast.FunctionDef | ast.AsyncFunctionDef) -> tuple[str, int]:
    """The normalised arguments and body (docstring left out), and the body's size in AST nodes."""
    body = list(function.body)
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    size = sum(1 for statement in body for _ in ast.walk(statement))
    if size < MIN_BODY_NODES:
        return "", size
    return _normalised([function.args, *body], function.name), size


def python_sources() -> list[Path]:
    """Our Python files (build folders and hidden ones such as virtual environments left out)."""
    found = [path for folder in SOURCE_FOLDERS for path in (REPO_ROOT / folder).rglob("*.py")]
    ours = [path for path in found
            if not any(part.startswith(".") or part == "build" for part in path.relative_to(REPO_ROOT).parts)]
    return sorted(ours) + [REPO_ROOT / "__init__.py"]


def test_no_two_functions_have_the_same_body():
    by_body: dict[str, list[str]] = defaultdict(list)
    for path in python_sources():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                fingerprint, size = body_fingerprint(node)
                if size >= MIN_BODY_NODES:
                    by_body[fingerprint].append(f"{path.relative_to(REPO_ROOT).as_posix()}:{node.name}")
    problems, allowed = [], set()
    for copies in by_body.values():
        for index, first in enumerate(copies):
            for second in copies[index + 1:]:
                pair = tuple(sorted((first, second)))
                if pair in SAME_BODY_PAIRS:
                    allowed.add(pair)
                else:
                    problems.append(f"{first} == {second}")
    assert not problems, (
        "Two functions have the same body: keep one definition and import it where the other was (or list the pair "
        "in SAME_BODY_PAIRS with its reason):\n  " + "\n  ".join(problems)
    )
    stale = set(SAME_BODY_PAIRS) - allowed
    assert not stale, f"These pairs differ now; delete them from SAME_BODY_PAIRS: {stale}"


@pytest.mark.parametrize("source, duplicated", [
    ("def a(x):\n    'doc a'\n    y = x * 2 + 1\n    return [y, y + 1, y + 2, y + 3, y + 4]\n"
     "def b(x: int) -> list:\n    'doc b'\n    y = x * 2 + 1\n    return [y, y + 1, y + 2, y + 3, y + 4]\n", True),
    ("def a(x):\n    y = x * 2 + 1\n    return [y, y + 1, y + 2, y + 3, y + 4]\n"
     "def b(x):\n    y = x * 3 + 1\n    return [y, y + 1, y + 2, y + 3, y + 4]\n", False),
])
def test_the_body_fingerprint_ignores_names_docstrings_and_annotations_only(source, duplicated):
    first, second = ast.parse(source).body
    assert (body_fingerprint(first)[0] == body_fingerprint(second)[0]) is duplicated
    assert body_fingerprint(first)[1] >= MIN_BODY_NODES


SECTION_COMMENT = re.compile(r"\s*# ?-{3,}")
SECTION_STYLE = re.compile(r"\s*# --- \S(.*\S)? -{3,}")


def test_section_comments_have_one_style():
    problems = [
        f"{path.relative_to(REPO_ROOT)}:{number}: {line.strip()}"
        for path in python_sources()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if SECTION_COMMENT.match(line) and not SECTION_STYLE.fullmatch(line)
    ]
    assert not problems, "Write section comments as '# --- title ---...' (dashes to the line's end):\n  " + "\n  ".join(
        problems)


@pytest.mark.parametrize("line, kept", [
    ("# --- the driver ----------", True),
    ("    # --- internals ---", True),
    ("# ---------------- the driver", False),
    ("    # ---- internals", False),
])
def test_the_section_comment_rule_tells_the_styles_apart(line, kept):
    assert bool(SECTION_COMMENT.match(line)) and bool(SECTION_STYLE.fullmatch(line)) is kept


# --- rooms ----------------------------------------------------------------------------------------------------------


MAX_MODULE_LINES = 700
LONG_MODULE_REASON = re.compile(r"^# Longer than 700 lines: \S", re.MULTILINE)
LIGHT_PACKAGE = "hymotion.shared"
# Modules allowed over MAX_MODULE_LINES say why in their first lines; the reason is read there, not listed here.
REASON_LINES = 30


def import_graph() -> dict[str, set[str]]:
    """Each project module -> the project modules it imports when it runs (imports inside functions count; those
    under TYPE_CHECKING never run)."""
    return {name: {imported.module for imported in imports_of(name) if imported.module in modules()} - {name}
            for name in modules()}


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The graph's cycles, one per strongly connected component of two or more modules (Tarjan's algorithm, written
    without recursion), each as a closed path ``[a, b, ..., a]`` through the component."""
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []
    for root in sorted(graph):
        if root in order:
            continue
        work = [(root, iter(sorted(graph[root])))]
        order[root] = low[root] = len(order)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            step = next(successors, None)
            if step is not None:
                if step not in order:
                    order[step] = low[step] = len(order)
                    stack.append(step)
                    on_stack.add(step)
                    work.append((step, iter(sorted(graph.get(step, ())))))
                elif step in on_stack:
                    low[node] = min(low[node], order[step])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == order[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(component)
    return [_closed_path(graph, component) for component in components]


def _closed_path(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest path from the component's first module back to itself, inside the component (breadth first)."""
    start = min(component)
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for step in sorted(graph[node] & component):
                if step == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [start] + list(reversed(path))[1:] + [start] if len(path) > 1 else [start, start]
                if step not in previous:
                    previous[step] = node
                    following.append(step)
        frontier = following
    raise AssertionError(f"{sorted(component)} is not strongly connected")


@pytest.mark.parametrize("graph, cycles", [
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c", "a"]]),
    ({"a": {"b"}, "b": set(), "c": {"b"}}, []),
    ({"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"c"}}, [["a", "b", "a"], ["c", "d", "c"]]),
])
def test_the_cycle_finder_finds_each_cycle_once(graph, cycles):
    assert sorted(import_cycles(graph)) == cycles


def test_no_import_cycles():
    graph = import_graph()
    assert sum(map(len, graph.values())) > 100, "the import graph is where this rule looks"
    cycles = import_cycles(graph)
    assert not cycles, (
        "Modules that import each other cannot be read (or loaded) one at a time: move what both need into a module "
        "of its own, or pass it in:\n  " + "\n  ".join(" -> ".join(cycle) for cycle in cycles)
    )


def test_no_module_is_over_700_lines():
    problems = []
    for module in modules().values():
        text = module.path.read_text(encoding="utf-8")
        lines = text.count("\n")
        head = "\n".join(text.splitlines()[:REASON_LINES])
        if lines > MAX_MODULE_LINES and not LONG_MODULE_REASON.search(head):
            problems.append(f"{module.path.relative_to(REPO_ROOT)}: {lines} lines")
    assert not problems, (
        f"A module over {MAX_MODULE_LINES} lines mixes jobs: split it by what each part is for, or say at its top why "
        "it must be one ('# Longer than 700 lines: <reason>'):\n  " + "\n  ".join(problems)
    )


def test_the_addon_imports_hymotion_only_from_its_light_package():
    problems = []
    for name, module in sorted(modules().items()):
        if not name.startswith("hymotion_addon"):
            continue
        for imported in imports_of(name):
            top = imported.module.split(".")[0]
            light = imported.module == LIGHT_PACKAGE or imported.module.startswith(LIGHT_PACKAGE + ".")
            if top == "hymotion" and not light:
                problems.append(f"{module.where(imported.line)} imports {imported.module}")
    assert not problems, (
        f"Blender gets only {LIGHT_PACKAGE} (the wheel's light part): move what the add-on needs there, or ask the "
        "backend through the protocol:\n  " + "\n  ".join(problems)
    )


def private_imports(module: Module) -> list[str]:
    """``from other import _name`` lines of ``module`` that reach into another project module's private names."""
    found = []
    for node in ast.walk(module.tree):
        if not isinstance(node, ast.ImportFrom):
            continue
        target = node.module or ""
        if node.level:
            base = module.package.split(".")
            target = ".".join(base[: len(base) - (node.level - 1)] + ([node.module] if node.module else []))
        if target.split(".")[0] not in PACKAGES:
            continue
        for alias in node.names:
            private = alias.name.startswith("_") and not alias.name.startswith("__")
            if private and f"{target}.{alias.name}" not in modules():
                found.append(f"{module.where(node.lineno)} imports {alias.name} from {target}")
    return found


def test_no_module_imports_another_modules_private_names():
    problems = [line for module in modules().values() for line in private_imports(module)]
    assert not problems, (
        "A leading underscore says 'only this module uses it': make the name public where it is defined (and give "
        "it a docstring), or move the code that needs it into that module:\n  " + "\n  ".join(problems)
    )


def test_the_private_import_rule_tells_private_from_public():
    source = "from hymotion.shared.jobs import _DURATION_PREFIX, parse_seeds\nfrom hymotion import __version__\n"
    module = Module("hymotion.example", BACKEND_ROOT / "hymotion" / "example.py", ast.parse(source))
    assert private_imports(module) == [
        "backend/hymotion/example.py:1 imports _DURATION_PREFIX from hymotion.shared.jobs"
    ]
