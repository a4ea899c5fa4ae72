"""Safe expressions for table specs: a spec is data, so opening one never runs code from it.

An expression (spec key `cost.formula`, ...) is parsed with `ast` and evaluated by walking an
explicit whitelist of nodes: numbers, column names, `+ - * / **`, unary minus and plus,
parentheses and the functions in FUNCTIONS, each with one argument. Anything else (attributes,
subscripts, other calls, `@`, lambdas, comprehensions, strings, comparisons) is refused with the
offending part named. Columns whose names are not identifiers are written in backticks
(`` `smooth loss` * 2 ``), as in pandas. Evaluation is vectorized over NumPy columns.

A fidelity `name_format` accepts only `{column}` and `{column:si}` fields (`format_name`).
"""
from __future__ import annotations

import ast
import re
import string
from typing import Callable, Mapping

import numpy as np

FUNCTIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "log": np.log, "log2": np.log2, "log10": np.log10, "exp": np.exp, "sqrt": np.sqrt}
MAX_LENGTH = 1000  # characters; a formula is a line of arithmetic
_BINOPS = {ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply,
           ast.Div: np.true_divide, ast.Pow: np.power}
_UNARY = {ast.USub: np.negative, ast.UAdd: np.positive}
_BACKTICK = re.compile(r"`([^`]*)`")


class ExprError(ValueError):
  """An expression outside the whitelist, or naming an unknown column; says which part."""


class Expression:
  """A parsed, checked expression; `columns` are the column names it reads."""

  def __init__(self, text: str):
    if not isinstance(text, str):
      raise ExprError(f"must be a string, got {type(text).__name__}")
    if len(text) > MAX_LENGTH:
      raise ExprError(f"is {len(text)} characters long; at most {MAX_LENGTH}")
    self.text = text
    self._quoted: dict[str, str] = {}

    def quote(m):  # `a b` -> an identifier that names column "a b"
      alias = f"bq{len(self._quoted)}_"
      self._quoted[alias] = m.group(1)
      return alias

    self._source = _BACKTICK.sub(quote, text)
    try:
      self._tree = ast.parse(self._source.strip(), mode="eval")
    except SyntaxError as e:
      at = max((e.offset or 1) - 1, 0)
      raise ExprError(f"is not an arithmetic expression ({e.msg} at character {at + 1}: "
                      f"{self._source.strip()[at:at + 30]!r})") from None
    self.columns: list[str] = []
    self._check(self._tree.body)

  def _part(self, node: ast.AST) -> str:
    seg = ast.get_source_segment(self._source.strip(), node) or type(node).__name__
    for alias, col in self._quoted.items():
      seg = seg.replace(alias, f"`{col}`")
    return seg

  def _check(self, node: ast.AST) -> None:
    if isinstance(node, ast.Constant):
      if type(node.value) not in (int, float):
        raise ExprError(f"may hold numbers only, not {self._part(node)!r}")
    elif isinstance(node, ast.Name):
      col = self._quoted.get(node.id, node.id)
      if col not in self.columns:
        self.columns.append(col)
    elif isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
      self._check(node.left)
      self._check(node.right)
    elif isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
      self._check(node.operand)
    elif isinstance(node, ast.Call):
      name = node.func.id if isinstance(node.func, ast.Name) else None
      if name not in FUNCTIONS or node.keywords or len(node.args) != 1:
        raise ExprError(f"may call only {sorted(FUNCTIONS)} with one argument, not "
                        f"{self._part(node)!r}")
      self._check(node.args[0])
    else:
      raise ExprError(f"may hold only numbers, column names, + - * / **, parentheses and "
                      f"{sorted(FUNCTIONS)}; refused: {self._part(node)!r}")

  def evaluate(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
    """The expression over float64 columns (every name in `self.columns` must be a key)."""
    missing = [c for c in self.columns if c not in columns]
    if missing:
      raise ExprError(f"names unknown column(s) {missing}")
    with np.errstate(all="ignore"):  # log of 0, overflow: inf / nan, as NumPy gives them
      return np.asarray(self._eval(self._tree.body, columns), np.float64)

  def _eval(self, node: ast.AST, cols: Mapping[str, np.ndarray]):
    if isinstance(node, ast.Constant):
      return np.float64(node.value)
    if isinstance(node, ast.Name):
      return np.asarray(cols[self._quoted.get(node.id, node.id)], np.float64)
    if isinstance(node, ast.BinOp):
      return _BINOPS[type(node.op)](self._eval(node.left, cols), self._eval(node.right, cols))
    if isinstance(node, ast.UnaryOp):
      return _UNARY[type(node.op)](self._eval(node.operand, cols))
    return FUNCTIONS[node.func.id](self._eval(node.args[0], cols))


class NameFormat:
  """A fidelity name template: literal text and `{column}` / `{column:si}` fields only."""

  def __init__(self, text: str, columns: list[str]):
    if not isinstance(text, str):
      raise ExprError(f"must be a string, got {type(text).__name__}")
    self.text = text
    self.parts: list[tuple[str, str | None, str]] = []  # (literal, column or None, spec)
    try:
      parsed = list(string.Formatter().parse(text))
    except ValueError as e:
      raise ExprError(f"is not a name template: {e}") from None
    for literal, field, spec, conversion in parsed:
      if field is None:
        self.parts.append((literal, None, ""))
        continue
      shown = "{" + field + ("!" + conversion if conversion else "") + (
          ":" + spec if spec else "") + "}"
      if conversion or spec not in ("", "si") or field not in columns:
        why = (f"field {field!r} is not one of fidelity.columns {columns}"
               if field not in columns else "only '{column}' and '{column:si}' are allowed")
        raise ExprError(f"refuses {shown!r}: {why}")
      self.parts.append((literal, field, spec))

  def format(self, row: Mapping[str, object]) -> str:
    out = []
    for literal, field, spec in self.parts:
      out.append(literal)
      if field is not None:
        out.append(si(row[field]) if spec == "si" else format(row[field], ""))
    return "".join(out)


def si(v) -> str:
  """1073741824 -> '1.07B' (three significant digits and a T/B/M/K suffix)."""
  x = float(v)
  for div, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
    if abs(x) >= div:
      return f"{x / div:.3g}{suffix}"
  return f"{x:.3g}"
