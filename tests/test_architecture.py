"""The layers' import rules, read from the source with ast: the engine knows no screen, models know neither."""
import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "portal"
# Screen packages (one blueprint each) and the glue above them; the engine and the models must import none of them.
FEATURES = ("auth", "automations", "customers", "features", "mailbox", "mails", "mailtemplates", "main", "presets",
            "settings", "tracking", "users")
ABOVE_THE_ENGINE = tuple(f"portal.{name}" for name in FEATURES) + ("portal.web", "portal.background", "portal.cli",
                                                                    "portal.errors", "portal.forms", "portal.policy")
WEB_LIBRARIES = ("flask", "flask_login", "flask_wtf", "flask_sqlalchemy", "flask_migrate", "flask_limiter", "wtforms",
                 "werkzeug", "jinja2")
# What the engine may use of the portal: its own modules, the models, the scoping helper and the secret box.
ENGINE_MAY_USE = ("portal.mailsync", "portal.models", "portal.scoping", "portal.secretbox")


def module_name(path: Path) -> str:
    """portal/mailsync/engine.py -> portal.mailsync.engine; a package's __init__ is the package."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def resolve(name: str, imported: str | None) -> str:
    """`from name import imported`: the submodule when `imported` is one, else the module itself."""
    if imported and f"{name}.{imported}" in MODULES:
        return f"{name}.{imported}"
    return name


def imports_of(module: str) -> dict[str, int]:
    """Every module this module imports (top-level or inside a function), with the first line that does."""
    path = MODULES[module]
    found: dict[str, int] = {}
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import: climb from this module's package
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [resolve(base, alias.name) for alias in node.names]
        else:
            continue
        for target in targets:
            found.setdefault(target, node.lineno)
    return found


GRAPH = {module: imports_of(module) for module in MODULES}


def where(module: str, target: str) -> str:
    """'portal/mailsync/engine.py:15' for the line that imports target."""
    return f"{MODULES[module].relative_to(ROOT)}:{GRAPH[module][target]}"


def forbidden_imports(prefix: str, forbidden: tuple[str, ...]) -> list[str]:
    """Lines in modules under prefix that import anything under one of the forbidden names."""
    return [f"{where(module, target)} {module} imports {target}"
            for module in GRAPH if module == prefix or module.startswith(prefix + ".")
            for target in GRAPH[module]
            if any(target == name or target.startswith(name + ".") for name in forbidden)]


def test_the_graph_sees_function_level_and_from_imports():
    """The reader itself: a function-level import counts, and `from portal.x import y` points at portal.x.y."""
    assert "portal.auth.routes" in GRAPH["portal"]  # imported inside register_blueprints
    assert "portal.mailsync.connection" in GRAPH["portal.mailsync.client"]
    assert "portal.audit" in GRAPH["portal.mailbox.services"]  # `from portal import audit`


def test_the_engine_imports_no_screen_and_no_flask():
    """portal.mailsync imports models, the secret box, the standard library and mail libraries only."""
    problems = forbidden_imports("portal.mailsync", ABOVE_THE_ENGINE + WEB_LIBRARIES)
    problems += [f"{where(module, target)} {module} imports {target}"
                 for module in GRAPH if module.startswith("portal.mailsync.")
                 for target in GRAPH[module] if (target == "portal" or target.startswith("portal."))
                 and not any(target == name or target.startswith(name + ".") for name in ENGINE_MAY_USE)]
    problems = sorted(set(problems))
    assert not problems, ("the import engine must not know screens or Flask (hooks and providers are passed in, "
                          "see docs/ARCHITECTURE.md):\n" + "\n".join(problems))


def test_the_engine_core_needs_no_imapclient():
    """Only the adapter (client.py) and connection.py speak imapclient; the pass itself sees MailboxError."""
    problems = forbidden_imports("portal.mailsync.engine", ("imapclient",))
    assert not problems, "engine.py must get IMAP errors from the adapter as MailboxError:\n" + "\n".join(problems)


def test_models_import_neither_screens_nor_the_engine():
    """portal.models is the bottom layer."""
    problems = forbidden_imports("portal.models", ABOVE_THE_ENGINE + ("portal.mailsync",) + WEB_LIBRARIES)
    assert not problems, "models must not import screens or the engine:\n" + "\n".join(problems)


# `Model.account_id == x` written by hand; a join's `== Account.id` is not a scope.
HAND_WRITTEN_SCOPE = re.compile(r"\b[A-Z]\w*\.account_id\s*==(?!\s*Account\.id\b)")


def test_queries_are_scoped_through_the_one_helper():
    """Services, routes and the engine scope rows with portal.scoping, never with a hand-written filter."""
    problems = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
                for module, path in MODULES.items()
                if module != "portal.scoping" and not module.startswith("portal.models")
                for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                if HAND_WRITTEN_SCOPE.search(line)]
    assert not problems, ("scope queries with portal.scoping.for_account / get_in_account (or web.scoped / "
                          "get_scoped_or_404 in routes):\n" + "\n".join(problems))


def import_cycles() -> list[list[str]]:
    """Each group of portal modules that import one another in a circle (strongly connected, Tarjan), as a path."""
    edges = {module: sorted(target for target in GRAPH[module] if target in GRAPH and target != module)
             for module in GRAPH}
    order: dict[str, int] = {}
    lowest: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(module: str) -> None:
        order[module] = lowest[module] = len(order)
        stack.append(module)
        for target in edges[module]:
            if target not in order:
                visit(target)
                lowest[module] = min(lowest[module], lowest[target])
            elif target in stack:
                lowest[module] = min(lowest[module], order[target])
        if lowest[module] == order[module]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for module in sorted(edges):
        if module not in order:
            visit(module)
    return groups


def test_the_cycle_finder_finds_a_hidden_function_level_cycle(monkeypatch):
    """The finder itself: two modules that import each other, one of them inside a function, form a cycle."""
    monkeypatch.setitem(GRAPH, "portal.policy", {**GRAPH["portal.policy"], "portal.audit": 1})
    monkeypatch.setitem(GRAPH, "portal.audit", {**GRAPH["portal.audit"], "portal.policy": 1})
    assert ["portal.audit", "portal.policy"] in import_cycles()


def test_no_import_cycle_among_portal_modules():
    """Arrows run one way: no module reaches itself again through imports, function-level ones included."""
    cycles = import_cycles()
    lines = [" ↔ ".join(group) + "\n    " + "\n    ".join(where(module, target) + f" {module} imports {target}"
                                                       for module in group for target in GRAPH[module]
                                                       if target in group)
             for group in cycles]
    assert not cycles, ("import cycles (move the shared piece down a layer or pass a function in, "
                        "see docs/ARCHITECTURE.md):\n" + "\n".join(lines))


# Screen modules: a route may use any package's services (the customer page shows mail and automations).
SCREEN_MODULES = {"routes", "forms", "oauth_routes"}
ENTRY_MODULES = ("portal", "portal.web", "portal.cli", "portal.errors")


def package_of(module: str) -> str:
    """portal.mailbox.services -> portal.mailbox; a top-level module is its own package."""
    return ".".join(module.split(".")[:2])


def test_packages_below_the_screens_depend_one_way():
    """Below routes and forms, two packages never import each other (features → mailbox, never back)."""
    arrows: dict[tuple[str, str], str] = {}
    for module, targets in GRAPH.items():
        if module in ENTRY_MODULES or module.rsplit(".", 1)[-1] in SCREEN_MODULES:
            continue
        for target in targets:
            if target in GRAPH and package_of(target) != package_of(module):
                arrows.setdefault((package_of(module), package_of(target)), where(module, target))
    both_ways = sorted(f"{one} ↔ {other}: {arrows[(one, other)]} and {arrows[(other, one)]}"
                       for one, other in arrows if (other, one) in arrows and one < other)
    assert not both_ways, "packages that import each other below the screens:\n" + "\n".join(both_ways)
