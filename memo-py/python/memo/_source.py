"""A function's code in canonical form: its parsed source with the
decorators, comments, docstrings and formatting left out, so only edits
that change what it does make new keys (comment edits do not, unlike
joblib#1533)."""

import ast
import inspect
import textwrap


def _strip_docstrings(node):
    for n in ast.walk(node):
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Module)):
            body = n.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                n.body = body[1:] or [ast.Pass()]


def _code_text(code) -> str:
    """The bytecode and constants of a code object (for functions whose
    source cannot be read): stable for one Python version."""
    consts = []
    for c in code.co_consts:
        consts.append(_code_text(c) if inspect.iscode(c) else repr(c))
    return f"bytecode:{code.co_code.hex()}:{code.co_names!r}:{consts!r}"


def canonical_code(fn) -> str:
    """``fn``'s code as memo keys it."""
    fn = inspect.unwrap(fn)
    try:
        src = textwrap.dedent(inspect.getsource(fn))
        tree = ast.parse(src)
    except (OSError, TypeError, SyntaxError, IndentationError):
        return _code_text(fn.__code__)
    node = tree.body[0] if tree.body else None
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        # A lambda, or source that is not the definition itself.
        return _code_text(fn.__code__)
    node.decorator_list = []
    _strip_docstrings(node)
    return ast.dump(node, annotate_fields=True, include_attributes=False)
