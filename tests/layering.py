"""The package's import contract, written once as data, and an AST checker for it.

Every import counts wherever it sits (module level, inside a function, under ``TYPE_CHECKING``), and so does
``importlib.import_module("literal")``: a deferred import still ties two layers together. Sources come in as a
``{relative_path: text}`` map so that a test can change one file in memory and watch the verdict change.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "trce_audit"
# Top to bottom; a package may import only what sits strictly below it. "a | b": independent siblings (neither
# imports the other); "a > b": one layer whose members are ordered as listed.
LAYERS = (
    "__main__ > cli",
    "api",
    "orchestration",
    "audit",
    "gating",
    "reports",
    "erasers | attacks | guards | pocket_eval",
    "generation",
    "metrics",
    "models",
    "data | execution",
    "store | pocket",
    "registry > records > parsing > versions > lazy > hashing > workspace > errors > __init__",
)
# The CLI reaches the package through the facade alone, so the facade is the one surface to keep stable.
CLI_MAY_IMPORT = frozenset({"trce_audit.api", "trce_audit.errors", "trce_audit.workspace", "trce_audit"})
# A shared name imported from a module that merely re-exports it pins that module in place. The store keeps
# re-exporting these to its callers, so store/ itself is exempt.
CANONICAL_HOMES = {
    "PromptRow": "trce_audit.records",
    "GeneratedImage": "trce_audit.records",
    "run_identity": "trce_audit.hashing",
    "prompt_row_hash": "trce_audit.hashing",
    "package_versions": "trce_audit.versions",
}
# What an import inside a function may defer: a library heavy enough (or optional enough) that importing it at
# the top would put it on a light path (`import trce_audit.api`, `--help`, listing plugins). Any other import
# belongs at the top, where the module's structure can be read.
HEAVY = frozenset({"torch", "diffusers", "transformers", "safetensors", "scipy", "nudenet", "onnxruntime",
                   "cleanfid", "ray", "huggingface_hub", "rich"})
# Each import inside a function hides an edge from whoever reads the tops of files, so they must stay few.
FUNCTION_LEVEL_BUDGET = 100
DEPTH = {part.strip(): (index, position)  # equal depth, different part: independent siblings
         for index, layer in enumerate(LAYERS)
         for position, group in enumerate(layer.split(">")) for part in group.split("|")}
_SYS_MODULES_WRITERS = {"pop", "popitem", "update", "setdefault", "clear", "__setitem__", "__delitem__"}


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    target: str
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message} [{self.rule}]"


@dataclass(frozen=True)
class Import:
    line: int
    target: str  # the module imported
    names: tuple[str, ...] = ()  # taken from it by `from target import ...`, submodules excluded
    dynamic: bool = False  # importlib.import_module("literal")


@dataclass
class Module:
    """What the checker reads from one file."""

    name: str
    imports: list[Import]
    function_level: list[int]  # line of each import statement inside a function
    deferred: list[Import]  # what those statements import
    eager: set[str]  # what runs when the module is imported: its top-level imports, TYPE_CHECKING ones excluded
    hazards: list[tuple[int, str, str, str]]  # line, target, rule, what
    served: set[str] | None  # see served_names


def read_sources(root: Path) -> dict[str, str]:
    files = [*(root / PACKAGE).rglob("*.py"), *(root / "tests").rglob("*.py")]
    return {p.relative_to(root).as_posix(): p.read_text(encoding="utf-8") for p in sorted(files)}


def module_name(path: str) -> str:
    return path[:-3].replace("/", ".").removesuffix(".__init__")


def part_of(module: str) -> str:
    return (module.split(".") + ["__init__"])[1]


def _resolved(node: ast.AST, module: str, is_package: bool, known: set[str]) -> list[Import]:
    if isinstance(node, ast.Import):
        return [Import(node.lineno, alias.name) for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        target = node.module or ""
        if node.level:
            base = module.split(".")[: None if is_package else -1]
            target = ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else []))
        names = tuple(a.name for a in node.names if f"{target}.{a.name}" not in known)
        subs = [Import(node.lineno, f"{target}.{a.name}") for a in node.names if f"{target}.{a.name}" in known]
        return subs + ([Import(node.lineno, target, names)] if names else [])
    if _called(node) == "import_module" and node.args and isinstance(node.args[0], ast.Constant):
        return [Import(node.lineno, node.args[0].value, dynamic=True)] if isinstance(node.args[0].value, str) else []
    return []


def _called(node: ast.AST) -> str:
    func = getattr(node, "func", None) if isinstance(node, ast.Call) else None
    return getattr(func, "attr", getattr(func, "id", ""))


def _is_sys_modules(node: ast.AST) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "modules" and getattr(node.value, "id", "") == "sys"


def _hazard(node: ast.AST, in_package: bool) -> tuple[str, str, str] | None:
    """(target, rule, what) for a sys.modules write anywhere, or an import hook in the package."""
    name = _called(node)
    if isinstance(node, ast.Subscript) and _is_sys_modules(node.value):
        return "sys.modules", "sys-modules", "indexes sys.modules"  # `"x" in sys.modules` reads, and is fine
    if name in ("setitem", "delitem") and node.args and _is_sys_modules(node.args[0]):
        return "sys.modules", "sys-modules", f"calls {name}(sys.modules, ...)"
    if name in _SYS_MODULES_WRITERS and _is_sys_modules(getattr(node.func, "value", None)):
        return "sys.modules", "sys-modules", f"calls sys.modules.{name}"
    if in_package and isinstance(node, ast.ClassDef) and any(
            ast.unparse(base).endswith("MetaPathFinder") for base in node.bases):
        return "MetaPathFinder", "import-hook", f"defines {node.name}, an import finder"
    if in_package and isinstance(node, ast.Attribute) and node.attr == "__class__" and isinstance(node.ctx, ast.Store):
        return "__class__", "import-hook", "assigns a module's __class__"
    return None


def _top_level(body: list[ast.stmt]):
    for node in body:
        yield node
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            for name in ("body", "orelse", "finalbody", "handlers"):
                yield from _top_level(getattr(node, name, []))


def served_names(tree: ast.Module) -> set[str] | None:
    """Names a module binds at top level, lists in __all__ or serves from a lazy _EXPORTS table; None: any."""
    names: set[str] = set()
    for node in _top_level(tree.body):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            if any(a.name == "*" for a in node.names):
                return None
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign, ast.For, ast.With)):
            bound = {t.id for t in ast.walk(node) if isinstance(t, ast.Name) and isinstance(t.ctx, ast.Store)}
            value = getattr(node, "value", None)
            if bound & {"__all__", "_EXPORTS"} and isinstance(value, (ast.List, ast.Tuple, ast.Dict)):
                keys = value.keys if isinstance(value, ast.Dict) else value.elts
                names |= {k.value for k in keys if isinstance(k, ast.Constant)}
            names |= bound
    return None if "__getattr__" in names and "_EXPORTS" not in names else names


def read_module(path: str, text: str, known: set[str]) -> Module:
    tree, in_package = ast.parse(text, path), path.startswith(f"{PACKAGE}/")
    module = Module(module_name(path), [], [], [], set(), [], served_names(tree))

    def walk(node: ast.AST, in_function: bool, typing_only: bool) -> None:
        for child in ast.iter_child_nodes(node):
            found = _resolved(child, module.name, path.endswith("__init__.py"), known)
            module.imports += found
            if in_function and isinstance(child, (ast.Import, ast.ImportFrom)):
                module.function_level.append(child.lineno)
                module.deferred += found
            elif not in_function and not typing_only:
                module.eager |= {i.target for i in found if not i.dynamic}
            hazard = _hazard(child, in_package)
            module.hazards += [(child.lineno, *hazard)] if hazard else []
            walk(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)),
                 typing_only or isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test))

    walk(tree, False, False)
    return module


def read_tree(sources: dict[str, str]) -> tuple[dict[str, str], dict[str, Module]]:
    """Package module -> its path, and path -> what was read from it (package and tests)."""
    modules = {module_name(p): p for p in sources if p.startswith(f"{PACKAGE}/")}
    return modules, {path: read_module(path, text, set(modules)) for path, text in sources.items()}


def _layer(module: str) -> str:
    part = part_of(module)
    if part not in DEPTH:
        return f"{part}, no layer"
    index, position = DEPTH[part]
    return f"{part}, layer {index + 1}" + (f".{position + 1}" if ">" in LAYERS[index] else "")


def _edge_findings(importer: str, imp: Import, modules: dict[str, str], read: dict[str, Module]):
    """(target, rule, message) of each rule one import breaks."""
    target, found = imp.target, []
    if target not in modules:
        found.append((target, "missing-module", f"{importer} imports {target}, which is no module"))
    elif read[modules[target]].served is not None:
        found += [(f"{target}.{n}", "missing-module", f"{importer} imports {n} from {target}, which does not serve it")
                  for n in imp.names if n not in read[modules[target]].served]
    if importer.split(".")[0] != PACKAGE:
        return found  # tests answer only for whether what they import exists
    a, b = part_of(importer), part_of(target)
    found += [(f"{target}.{n}", "canonical-home", f"{importer} imports {n} from {target}, not {CANONICAL_HOMES[n]}")
              for n in imp.names if CANONICAL_HOMES.get(n, target) != target and a != "store"]
    if a == b:
        return found
    edge = f"{importer} ({_layer(importer)}) imports {target} ({_layer(target)})"
    if a not in DEPTH or b not in DEPTH:
        found.append((target, "unlayered", f"{edge}, a package outside the contract"))
    elif DEPTH[b] < DEPTH[a]:
        found.append((target, "upward", f"{edge}, a higher layer"))
    elif DEPTH[b] == DEPTH[a]:
        found.append((target, "independent-siblings", f"{edge}, an independent sibling"))
    if a == "cli" and target not in CLI_MAY_IMPORT:
        allowed = ", ".join(sorted(CLI_MAY_IMPORT))
        found.append((target, "cli-allow-list", f"{edge}; the CLI may import only {allowed}"))
    return found


def import_graph(modules: dict[str, str], read: dict[str, Module]) -> dict[str, set[str]]:
    return {m: {i.target for i in read[p].imports if i.target in modules} - {m} for m, p in modules.items()}


def strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's components of more than one module: every edge inside one lies on an import cycle."""
    index, low, stack, components = {}, {}, [], []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = {stack.pop()}
            while v not in component:
                component.add(stack.pop())
            if len(component) > 1:
                components.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return components


def cycles(sources: dict[str, str]) -> list[set[str]]:
    return strongly_connected(import_graph(*read_tree(sources)))


def check(sources: dict[str, str]) -> list[Finding]:
    """Every finding on the tree, sorted by file and line."""
    modules, read = read_tree(sources)
    findings = {Finding(path, line, target, rule, f"{module.name} {what}")
                for path, module in read.items() for line, target, rule, what in module.hazards}
    for path, module in read.items():
        for imp in module.imports:
            # A test may probe that an old module is gone; only its import statements must resolve.
            if imp.target.split(".")[0] == PACKAGE and (path.startswith(f"{PACKAGE}/") or not imp.dynamic):
                findings |= {Finding(path, imp.line, *one) for one in _edge_findings(module.name, imp, modules, read)}
    for component in strongly_connected(import_graph(modules, read)):
        members = ", ".join(sorted(component))
        findings |= {Finding(modules[m], i.line, i.target, "cycle",
                             f"{m} imports {i.target}, on the import cycle {{{members}}}")
                     for m in component for i in read[modules[m]].imports if i.target in component - {m}}
    return sorted(findings, key=lambda f: (f.path, f.line, f.rule, f.target))


def function_level_imports(sources: dict[str, str]) -> list[str]:
    """`path:line` of each import statement inside a function in the package (the budget counts these)."""
    return [f"{path}:{line}" for path, module in read_tree(sources)[1].items() if path.startswith(f"{PACKAGE}/")
            for line in module.function_level]


def heavy_at_import(modules: dict[str, str], read: dict[str, Module]) -> dict[str, str]:
    """Package module -> the heavy library importing it loads (through its parents and top-level imports)."""
    heavy: dict[str, str] = {}

    def pulls(module: str, seen: set[str]) -> str:
        if module in heavy or module in seen:
            return heavy.get(module, "")
        seen.add(module)
        parents = [".".join(module.split(".")[:n]) for n in range(1, module.count(".") + 1)]
        for target in sorted(read[modules[module]].eager) + parents:
            found = (target.split(".")[0] if target.split(".")[0] in HEAVY
                     else pulls(target, seen) if target in modules else "")
            if found:
                heavy[module] = found
                return found
        return ""

    for module in modules:
        pulls(module, set())
    return heavy


def light_deferred_imports(sources: dict[str, str]) -> list[Finding]:
    """Imports inside a package function whose target is light: nothing keeps them from the top of the file."""
    modules, read = read_tree(sources)
    heavy = heavy_at_import(modules, read)
    return [Finding(path, imp.line, imp.target, "light-deferred",
                    f"{module.name} imports {imp.target} inside a function, but it loads none of "
                    f"{', '.join(sorted(HEAVY))}; import it at the top")
            for path, module in read.items() if path.startswith(f"{PACKAGE}/")
            for imp in module.deferred
            if imp.target.split(".")[0] not in HEAVY and imp.target not in heavy]


if __name__ == "__main__":
    # `python tests/layering.py [CHECKOUT]`: the findings by rule, the imports inside functions, and the
    # module sizes tests/test_architecture.py bounds, for this checkout or another (a before/after count).
    import statistics
    import sys
    from collections import Counter

    root = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[1])
    sources = read_sources(root)
    found = check(sources)
    lengths = [len(text.splitlines()) for path, text in sources.items() if path.startswith(f"{PACKAGE}/")]
    print(f"findings {len(found)} {dict(Counter(str(f).rsplit('[', 1)[-1].rstrip(']') for f in found))}")
    print(f"imports inside functions {len(function_level_imports(sources))} (budget {FUNCTION_LEVEL_BUDGET})")
    print(f"modules {len(lengths)}, median {statistics.median(lengths)} lines, largest {max(lengths)}, over 400: "
          f"{sum(n > 400 for n in lengths)}")
