"""The layering rules, read from the source (every ``import``, at any depth, lazily or not):

- ``ingestion/`` is the lower layer, a library a notebook imports: the backend builds on it, and it imports nothing
  of the backend but its one facade for in-process ingestion (``backend.rag.local_ingest``), and that only inside
  the call that needs it, so that importing the library never imports the backend.
- Services never import routers: outside ``backend/api/`` and ``backend/main.py`` no backend module imports
  ``backend.api`` or ``backend.main``.
- ``frontend/`` talks to the backend over HTTP only: it imports nothing of it.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.support import ROOT

INGESTION_FACADE = "backend.rag.local_ingest"


@dataclass(frozen=True)
class Import:
    path: Path
    line: int
    module: str
    eager: bool  # runs when the module is imported (not inside a function, nor under ``if TYPE_CHECKING:``)

    def __str__(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line} imports {self.module}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, text: str | None = None) -> list[Import]:
    """Every module an ``import`` or ``from ... import`` statement of this file (or of ``text``, as though it lay
    at ``path``) names, relative ones resolved."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found: list[Import] = []

    def visit(node: ast.AST, eager: bool) -> None:
        for child in ast.iter_child_nodes(node):
            lazy = isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) or (
                isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test)
            )
            if isinstance(child, ast.Import):
                found.extend(Import(path, child.lineno, alias.name, eager) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                # ``from backend.rag import local_ingest`` names the module backend.rag.local_ingest
                found.extend(Import(path, child.lineno, f"{base}.{alias.name}", eager) for alias in child.names)
            visit(child, eager and not lazy)

    visit(ast.parse(path.read_text() if text is None else text, str(path)), True)
    return found


def names(imported: str, prefix: str) -> bool:
    """Whether ``imported`` is the module ``prefix`` or inside it (``from backend.api.routes import x`` too)."""
    return imported == prefix or imported.startswith(prefix + ".")


def sources(folder: str) -> list[Path]:
    files = sorted((ROOT / folder).rglob("*.py"))
    assert files or folder == "frontend", f"no Python files under {folder}/"
    return files


def test_the_rule_reader_sees_lazy_relative_and_type_checking_imports() -> None:
    text = "import os\nif TYPE_CHECKING:\n    from backend.config import Settings\ndef f():\n    from . import plan\n"
    found = [(i.module, i.eager) for i in imports_of(ROOT / "ingestion" / "sample.py", text)]
    assert found == [("os", True), ("backend.config.Settings", False), ("ingestion.plan", False)]


def test_ingestion_imports_only_the_backend_facade_and_only_lazily() -> None:
    backend = [i for path in sources("ingestion") for i in imports_of(path) if names(i.module, "backend")]
    internals = [str(i) for i in backend if not names(i.module, INGESTION_FACADE)]
    assert internals == [], f"ingestion/ may import only {INGESTION_FACADE} of the backend"
    eager = [str(i) for i in backend if i.eager]
    assert eager == [], "ingestion/ imports the backend's facade only inside the call that needs it"
    assert backend, "in-process ingestion goes through the facade"


def test_importing_the_ingestion_library_imports_no_backend_module() -> None:
    script = (
        "import sys, ingestion, ingestion.client, ingestion.in_process, ingestion.loaders, ingestion.parser_pool; "
        "print(sorted(m for m in sys.modules if m == 'backend' or m.startswith('backend.')))"
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_services_never_import_routers() -> None:
    allowed = {ROOT / "backend" / "main.py"}
    offenders = [
        str(i)
        for path in sources("backend")
        if path not in allowed and not path.is_relative_to(ROOT / "backend" / "api")
        for i in imports_of(path)
        if names(i.module, "backend.api") or names(i.module, "backend.main")
    ]
    assert offenders == []


def test_the_frontend_imports_nothing_of_the_backend() -> None:
    offenders = [str(i) for path in sources("frontend") for i in imports_of(path) if names(i.module, "backend")]
    assert offenders == []
