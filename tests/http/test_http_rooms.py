"""``http/`` keeps one concern per module (issue 16.1: ``retry.py`` had mixed tenacity wiring,
pacing, error wording and the client facade). Read from the source (AST), like
``tests/test_ownership.py``: the tenacity wiring lives in ``retry.py`` alone, and every error
of a call (the retry loop, its pacing, the facade) is worded in ``wording.py``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import cronkeeper.http

HTTP = Path(cronkeeper.http.__file__).parent
CALL_PATH = {"retry.py", "throttle.py", "context.py", "policy.py", "classify.py", "pacing.py"}
"""The modules one call goes through; client-side quotas (limits.py) word their own refusal."""
ERRORS = {
    "PermanentFetchError",
    "RetriesExhausted",
    "WaitTooLong",
    "ApiVersionRefused",
    "TooMuchData",
}


def _modules(root: Path = HTTP) -> dict[str, ast.Module]:
    return {p.name: ast.parse(p.read_text(encoding="utf-8")) for p in sorted(root.glob("*.py"))}


def tenacity_outside_the_retry_loop(root: Path = HTTP) -> list[str]:
    found = []
    for name, tree in _modules(root).items():
        for node in ast.walk(tree):
            imported = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            if name != "retry.py" and any(m.split(".")[0] == "tenacity" for m in imported):
                found.append(f"{name}:{node.lineno}")
    return found


def errors_worded_outside_wording(root: Path = HTTP) -> list[str]:
    return [
        f"{name}:{node.lineno}"
        for name, tree in _modules(root).items()
        if name in CALL_PATH
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ERRORS
    ]


def test_tenacity_is_wired_in_retry_py_only() -> None:
    assert tenacity_outside_the_retry_loop() == []


def test_the_http_layers_errors_are_worded_in_wording_py_only() -> None:
    assert errors_worded_outside_wording() == []


def test_the_guards_see_what_they_guard_against(tmp_path: Path) -> None:
    (tmp_path / "context.py").write_text(
        "from tenacity import AsyncRetrying\nraise WaitTooLong('x', wait_seconds=1)\n",
        encoding="utf-8",
    )
    (tmp_path / "retry.py").write_text("import tenacity\n", encoding="utf-8")
    assert tenacity_outside_the_retry_loop(tmp_path) == ["context.py:1"]
    assert errors_worded_outside_wording(tmp_path) == ["context.py:2"]
