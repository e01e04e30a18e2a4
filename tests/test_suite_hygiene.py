"""The suite itself: no wall-clock assertion, no real wait of more than a fraction of a second.

A test that asserts ``elapsed < 2.5`` fails on a loaded machine and proves little on an idle
one. Waits are proved with the injected clock and sleep, attempt counts and request logs; a
wait for an *event* may have a deadline, but only as a hang guard that fails when the event
never comes (``tests/faults/helpers.wait_until``, ``asyncio.timeout`` around a run,
pytest-timeout), never as an ``assert`` on how long something took. Timings belong in
``bench/``.

What is flagged, by reading every test module's syntax tree:

- an ``assert`` that reads a wall clock (``time.monotonic()``, ``perf_counter()``,
  ``time.time()``, the loop's ``time()``), or uses a name computed from one in the same
  function (``elapsed = time.monotonic() - started``), or a name that by convention holds a
  duration (``elapsed``, ``took``, ``gap``), or a request log's
  ``attempt_gaps(…)``;
- a real ``time.sleep``/``asyncio.sleep`` of more than half a second (a literal or a
  module-level constant).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

TESTS = Path(__file__).resolve().parent
SAMPLES = TESTS / "support_tests" / "hygiene"
"""What the hygiene check is tested on (text, not Python the suite runs)."""
CLOCK_CALLS = {"monotonic", "monotonic_ns", "perf_counter", "perf_counter_ns", "attempt_gaps"}
DURATION_NAMES = {"elapsed", "took", "waited"}
SLEEP_LIMIT = 0.5


def _walk(node: ast.AST) -> Iterator[ast.AST]:
    """``ast.walk`` that does not enter ``len(…)`` (a count is not a time) or subscripts'
    indexes (``records[0].at`` compares no number)."""
    if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "len":
        return
    yield node
    for child in ast.iter_child_nodes(node):
        if isinstance(node, ast.Subscript) and child is node.slice:
            continue
        yield from _walk(child)


def _reads_clock(node: ast.AST) -> bool:
    """``time.monotonic()``, ``perf_counter()``, ``time.time()``, ``loop.time()``, a request
    log's ``attempt_gaps(…)``."""
    for sub in _walk(node):
        if not isinstance(sub, ast.Call):
            continue
        func = sub.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if name in CLOCK_CALLS:
            return True
        if name == "time" and isinstance(func, ast.Attribute):
            owner = ast.unparse(func.value)
            if owner == "time" or "loop" in owner:
                return True
    return False


def _names(node: ast.AST) -> set[str]:
    return {n.id for n in _walk(node) if isinstance(n, ast.Name)}


def _targets(node: ast.AST) -> set[str]:
    if isinstance(node, ast.Assign):
        return set().union(*(_names(t) for t in node.targets))
    if isinstance(node, ast.AnnAssign | ast.AugAssign | ast.NamedExpr):
        return _names(node.target)
    return set()


def _has_number(node: ast.AST, constants: dict[str, float], bounded: set[str]) -> bool:
    for sub in _walk(node):
        if isinstance(sub, ast.Constant) and type(sub.value) in (int, float):
            return True
        if isinstance(sub, ast.Name) and (sub.id in constants or sub.id in bounded):
            return True
    return False


def _tainted(scope: ast.AST, constants: dict[str, float]) -> tuple[set[str], set[str]]:
    """Names in ``scope`` computed from a wall-clock reading, and those of them that also
    carry a number (``deadline = time.monotonic() + 5``)."""
    tainted: set[str] = set()
    bounded: set[str] = set()
    assignments = [n for n in ast.walk(scope) if _targets(n)]
    changed = True
    while changed:
        changed = False
        for node in assignments:
            value = getattr(node, "value", None)
            if value is None or not (_reads_clock(value) or _names(value) & tainted):
                continue
            targets = _targets(node)
            if targets - tainted:
                tainted |= targets
                changed = True
            if _has_number(value, constants, bounded) and targets - bounded:
                bounded |= targets
                changed = True
    return tainted, bounded


def _constants(tree: ast.Module) -> dict[str, float]:
    values: dict[str, float] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign | ast.AnnAssign) and isinstance(node.value, ast.Constant):
            value = node.value.value
            if isinstance(value, int | float) and not isinstance(value, bool):
                for name in _targets(node):
                    values[name] = float(value)
    return values


def _seconds(arg: ast.expr, constants: dict[str, float]) -> float | None:
    if isinstance(arg, ast.Constant) and isinstance(arg.value, int | float):
        return float(arg.value)
    if isinstance(arg, ast.Name):
        return constants.get(arg.id)
    return None


def wall_clock_problems(source: str, filename: str) -> Iterator[str]:
    """``file:line: what`` for each wall-clock assertion and long real sleep in ``source``."""
    tree = ast.parse(source, filename)
    constants = _constants(tree)
    seen: set[int] = set()
    clockless = not any(word in source for word in (*CLOCK_CALLS, *DURATION_NAMES, ".time()"))
    for scope in ast.walk(tree):
        if clockless or not isinstance(scope, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        tainted, bounded = _tainted(scope, constants)

        def timed(node: ast.AST, tainted: set[str] = tainted) -> bool:
            return _reads_clock(node) or bool(_names(node) & (tainted | DURATION_NAMES))

        for node in ast.walk(scope):
            if not isinstance(node, ast.Assert) or node.lineno in seen:
                continue
            for compare in (n for n in _walk(node.test) if isinstance(n, ast.Compare)):
                operands = [compare.left, *compare.comparators]
                clocked = [i for i, o in enumerate(operands) if timed(o)]
                numbered = [i for i, o in enumerate(operands) if _has_number(o, constants, bounded)]
                if any(i != j for i in clocked for j in numbered):
                    seen.add(node.lineno)
                    test = ast.unparse(node.test)
                    yield f"{filename}:{node.lineno}: wall-clock assertion: {test}"
                    break
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr == "sleep":
            owner = ast.unparse(func.value)
            seconds = _seconds(node.args[0], constants)
            if owner in {"time", "asyncio", "anyio", "trio"} and (seconds or 0) > SLEEP_LIMIT:
                yield f"{filename}:{node.lineno}: real sleep of {seconds:g} s: {ast.unparse(node)}"


def test_the_hygiene_check_catches_what_it_should() -> None:
    # Samples kept as text files, not as Python in the suite: they are what the check must
    # flag (or let pass), never assertions any test runs.
    bad = (SAMPLES / "wall_clock_bad.txt").read_text(encoding="utf-8")
    found = list(wall_clock_problems(bad, "bad.py"))
    lines = sorted(int(f.split(":")[1]) for f in found)
    assert lines == [6, 8, 9, 11, 12, 13, 15, 17], found

    fine = (SAMPLES / "wall_clock_fine.txt").read_text(encoding="utf-8")
    assert list(wall_clock_problems(fine, "fine.py")) == []


def test_no_test_asserts_on_the_wall_clock_or_sleeps_for_real() -> None:
    problems = [
        problem
        for path in sorted(TESTS.rglob("*.py"))
        for problem in wall_clock_problems(
            path.read_text(encoding="utf-8"), str(path.relative_to(TESTS.parent))
        )
    ]
    assert not problems, "\n".join(problems)
