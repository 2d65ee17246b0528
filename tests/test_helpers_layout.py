"""Test modules take shared helpers from helper modules (tests/factories.py, tests/integration/mailbox.py, ...),
never from each other: one test file's change must not break another's, and an imported fixture is a name
ruff sees as unused or redefined."""
import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at any level."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_no_test_module_imports_another():
    """A helper two test modules need moves to a helper module."""
    found = [f"{path.relative_to(TESTS.parent)} imports {name}" for path in sorted(TESTS.rglob("*.py"))
             for name in sorted(imported_modules(path))
             if name.startswith("tests.") and name.rsplit(".", 1)[-1].startswith("test_")]
    assert not found, found
