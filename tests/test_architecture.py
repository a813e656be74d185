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
