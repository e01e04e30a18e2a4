"""``docs/architecture.md`` is generated from the code (``scripts/architecture.py``), so it
cannot drift: regenerated here, it must equal the file."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "architecture", ROOT / "scripts" / "architecture.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docs_architecture_is_what_the_code_says() -> None:
    script = _script()
    current = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    assert current == script.render(), (
        f"docs/architecture.md is stale: run `{script.REGENERATE}` and commit the result"
    )


def test_the_import_walk_sees_every_kind_of_import(tmp_path: Path) -> None:
    """Absolute, relative, function-level and ``from cronkeeper import room`` imports each
    count; a name that is no room (``__version__``) does not."""
    src = tmp_path / "cronkeeper"
    for room in ("api", "ops", "web", "ledger"):
        (src / room).mkdir(parents=True)
        (src / room / "__init__.py").write_text("", encoding="utf-8")
    (src / "health.py").write_text("from cronkeeper import __version__\n", encoding="utf-8")
    (src / "ops" / "m.py").write_text(
        "from cronkeeper.api.deps import x\nfrom ..ledger import store\n", encoding="utf-8"
    )
    (src / "web" / "v.py").write_text(
        "def f():\n    from cronkeeper import health\n    import cronkeeper.ops.m\n",
        encoding="utf-8",
    )
    graph = _script().import_graph(src)
    assert graph["ops"] == {"api", "ledger"}
    assert graph["web"] == {"health", "ops"}
    assert graph["health"] == set()


def test_every_concept_names_a_room_of_its_own() -> None:
    concepts = _script().CONCEPTS
    names = [concept for concept, _, _ in concepts]
    assert len(names) == len(set(names))
    for needed in ("Health evaluation", "Report day", "Alerting", "Bounded database call"):
        assert needed in names


API_IMPORTERS = {"cli"}
"""The only room above the API: the entry point that builds the app."""


def test_no_lower_room_imports_the_api() -> None:
    graph = _script().import_graph()
    below = sorted(room for room, targets in graph.items() if "api" in targets)
    assert set(below) <= API_IMPORTERS, f"rooms below the API import it: {below}"
