"""The test suite itself: no assert that cannot fail (read with `ast`, so it never comes back).

Caught: `assert <...> or True` (anywhere inside the asserted expression, a generator in
`all(...)` included), asserting a constant or a non-empty tuple (`assert (x, "msg")`),
`assert x == x`, and an assert inside a `try` whose `except` (bare, Exception, BaseException,
AssertionError) swallows the failure without raising again.
"""

from __future__ import annotations

import ast

from .conftest import ROOT

SWALLOWING = {"Exception", "BaseException", "AssertionError"}


def always_true(test: ast.expr) -> bool:
    if isinstance(test, ast.Constant):
        return bool(test.value)
    if isinstance(test, (ast.Tuple, ast.List, ast.Set)):
        return bool(test.elts)
    if isinstance(test, ast.Dict):
        return bool(test.keys)
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not) and isinstance(test.operand, ast.Constant):
        return not test.operand.value
    if isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], (ast.Eq, ast.Is, ast.LtE, ast.GtE)):
        same = ast.dump(test.left) == ast.dump(test.comparators[0])
        return same and not any(isinstance(n, ast.Call) for n in ast.walk(test.left))  # f() == f() may differ
    return False


def _caught(handler: ast.ExceptHandler) -> set[str]:
    if handler.type is None:
        return {"(bare)"}
    types = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return {t.id if isinstance(t, ast.Name) else getattr(t, "attr", "") for t in types}


def unfailable_asserts(source: str, name: str = "<test>") -> list[tuple[int, str]]:
    """(line, why) for each assert in `source` that cannot fail."""
    found = []
    for node in ast.walk(ast.parse(source, name)):
        if isinstance(node, ast.Assert):
            if always_true(node.test):
                found.append((node.lineno, "asserts something always true"))
            if any(isinstance(sub, ast.BoolOp) and isinstance(sub.op, ast.Or)
                   and any(isinstance(v, ast.Constant) and v.value for v in sub.values) for sub in ast.walk(node.test)):
                found.append((node.lineno, "`or <true constant>` in the asserted expression"))
        elif isinstance(node, ast.Try):
            asserts = [n for stmt in node.body for n in ast.walk(stmt) if isinstance(n, ast.Assert)]
            for handler in node.handlers:
                caught = _caught(handler)
                if asserts and caught & (SWALLOWING | {"(bare)"}) and not any(isinstance(n, ast.Raise) for n in ast.walk(handler)):
                    found.append((asserts[0].lineno, f"assert inside a try whose `except {'/'.join(sorted(caught))}` swallows it"))
    return found


def test_the_checker_catches_each_kind():
    source = '''
def test_x(x, items):
    assert all(isinstance(i, int) or True for i in items)
    assert x or True
    assert True
    assert (x, "message")
    assert not None
    assert x == x
    assert x.shape == x.shape
    try:
        assert x > 1
    except Exception:
        pass
    try:
        assert x > 2
    except:
        print("no")
    assert x == 1 or x == 2
    assert f() == f()
    try:
        assert x > 3
    except AssertionError:
        raise RuntimeError("with context")
    try:
        assert x > 4
    except ValueError:
        pass
'''
    lines = sorted(line for line, _ in unfailable_asserts(source))
    assert lines == [3, 4, 5, 6, 7, 8, 9, 11, 15]


def test_no_assert_in_the_suite_cannot_fail():
    found = [f"{path.relative_to(ROOT)}:{line}: {why}" for path in sorted((ROOT / "tests").rglob("*.py"))
             for line, why in unfailable_asserts(path.read_text(), str(path))]
    assert found == [], "\n".join(found)
