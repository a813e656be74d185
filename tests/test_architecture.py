"""Architecture rules import-linter cannot state (its contracts in pyproject.toml run in `make test`)."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("webapp", "labeling", "training")


def module_name(root: Path, path: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def private_imports(root: Path = ROOT) -> list[str]:
    """`from project.module import _name` in another module, function-level imports included."""
    found = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            importer = module_name(root, path)
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if not isinstance(node, ast.ImportFrom) or not node.module or node.level:
                    continue
                if node.module.split(".")[0] in PACKAGES and node.module != importer:
                    found += [
                        f"{importer} imports {alias.name} from {node.module}"
                        for alias in node.names
                        if alias.name.startswith("_") and not alias.name.startswith("__")
                    ]
    return found


def test_no_module_imports_a_private_name_of_another():
    assert private_imports() == []


def test_the_rule_sees_function_level_imports_and_allows_a_modules_own_names(tmp_path):
    (tmp_path / "webapp").mkdir()
    (tmp_path / "webapp" / "review.py").write_text("from webapp.review import _own\n")
    (tmp_path / "webapp" / "jobs.py").write_text("def f():\n    from webapp.review import _replace_pairs, rebuild\n")
    assert private_imports(tmp_path) == ["webapp.jobs imports _replace_pairs from webapp.review"]


ROOMS = ("accounts", "iterations", "review", "transfer", "jobs", "dashboard")


def webapp_imports(root: Path = ROOT) -> list[tuple[str, str]]:
    """(importer, imported module) for every import of a webapp module inside webapp/, function-level included;
    `from webapp.review import views` counts as importing webapp.review.views."""
    found = []
    for path in sorted((root / "webapp").rglob("*.py")):
        importer = module_name(root, path)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found += [(importer, alias.name) for alias in node.names if alias.name.startswith("webapp.")]
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "webapp":
                found += [(importer, f"{node.module}.{alias.name}") for alias in node.names]
                found.append((importer, node.module))
    return found


def is_views(module: str) -> bool:
    return module.rsplit(".", 1)[-1].endswith("views")


def test_views_are_imported_only_by_urls_and_other_views():
    """Nothing below the pages depends on them: a service, a job or a form that imported a view would pull the
    HTTP layer into workers and commands."""
    wrong = [(a, b) for a, b in webapp_imports() if is_views(b) and not (is_views(a) or a == "webapp.urls")]
    assert wrong == []


def test_the_rule_on_views_sees_a_module_imported_by_name(tmp_path):
    (tmp_path / "webapp" / "review").mkdir(parents=True)
    (tmp_path / "webapp" / "review" / "service.py").write_text("def f():\n    from webapp.review import views\n")
    found = [(a, b) for a, b in webapp_imports(tmp_path) if is_views(b)]
    assert found == [("webapp.review.service", "webapp.review.views")]


def test_each_room_says_what_it_owns_and_stays_small():
    """The rooms of docs/ARCHITECTURE.md: each opens with a docstring naming what it owns and what it imports,
    and holds at most 15 modules (a room that grows past that is two rooms)."""
    for room in ROOMS:
        package = ROOT / "webapp" / room
        docstring = ast.get_docstring(ast.parse((package / "__init__.py").read_text()))
        assert docstring and "Imports" in docstring, room
        assert len([p for p in package.glob("*.py") if p.name != "__init__.py"]) <= 15, room
        assert f"webapp/{room}/" in (ROOT / "docs" / "ARCHITECTURE.md").read_text(), room
