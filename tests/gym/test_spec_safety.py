"""A table spec is data: opening one never runs code from it (expr.py's whitelist)."""
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from autollmr.gym import expr

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _sweep(tmp_path, formula="6 * params * tokens", name_format="{params:si}",
           derived="2 * lr"):
  pd.DataFrame({"lr": [1e-3, 2e-3, 1e-3, 2e-3], "params": [1e7, 1e7, 1e8, 1e8],
                "tokens": [1e9] * 4, "loss": [3.0, 2.9, 2.8, 2.7]}).to_csv(
                    tmp_path / "runs.csv", index=False)
  spec = {"name": "evil", "csv": "runs.csv",
          "derive": [{"name": "lr2", "expr": derived}],
          "config": [{"column": "lr2", "transform": "log2"}],
          "fidelity": {"columns": ["params"], "name_format": name_format,
                       "features": [{"column": "params", "transform": "log10"}]},
          "objective": {"column": "loss", "direction": "min"},
          "cost": {"formula": formula}}
  path = tmp_path / "evil.json"
  path.write_text(json.dumps(spec))
  return path


def _describe(spec_path, cwd):
  return subprocess.run([sys.executable, "-m", "autollmr.gym", "describe", "--spec",
                         str(spec_path)], cwd=cwd, capture_output=True, text=True,
                        env={**os.environ, "PYTHONPATH": REPO, "AUTOLLMR_DATA": "none"},
                        timeout=120)


def _payloads(canary):
  return [
      ("cost.formula", f'6 * params * tokens + @os.system("echo PWNED > {canary}")'),
      ("cost.formula", f"__import__('os').system('echo PWNED > {canary}')"),
      ("cost.formula", "params.__class__"),
      ("cost.formula", "params.__class__.__init__.__globals__"),
      ("cost.formula", "(lambda: 1)()"),
      ("cost.formula", "params[0]"),
      ("cost.formula", "open('/etc/passwd')"),
      ("cost.formula", f"[open('{canary}', 'w') for _ in 'a']"),
      ("cost.formula", "log(params, 2)"),
      ("fidelity.name_format", "{params.__class__}"),
      ("fidelity.name_format", "{params!r}"),
      ("fidelity.name_format", "{0}"),
      ("derive[0].expr", f"__import__('os').system('echo PWNED > {canary}')"),
      ("derive[0].expr", "lr.__class__.__mro__"),
      ("derive[0].expr", f"open('{canary}', 'w').write('x')"),
  ]


@pytest.mark.parametrize("index", range(15))
def test_payload_refused_in_one_line(tmp_path, index):
  canary = tmp_path / "pwned.txt"
  key, payload = _payloads(canary)[index]
  spec = (_sweep(tmp_path, formula=payload) if key == "cost.formula"
          else _sweep(tmp_path, derived=payload) if key.startswith("derive")
          else _sweep(tmp_path, name_format=payload))
  r = _describe(spec, tmp_path)
  assert r.returncode == 2, (r.stdout, r.stderr)
  lines = r.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
  assert str(spec) in lines[0] and key in lines[0]
  assert not canary.exists()


def test_safe_formula_describes(tmp_path):
  r = _describe(_sweep(tmp_path, "6 * `params` * tokens / sqrt(4) + log10(1)"), tmp_path)
  assert r.returncode == 0, r.stderr
  assert "evil" in r.stdout and "100M" in r.stdout


def test_expression_matches_numpy():
  cols = {"N": np.array([1e8, 2e9]), "D": np.array([2e10, 4e10]), "a b": np.array([1.0, 4.0])}
  e = expr.Expression("6 * N * D / 2 ** 3 - -sqrt(`a b`) + log2(8)")
  assert e.columns == ["N", "D", "a b"]
  np.testing.assert_allclose(e.evaluate(cols),
                             6 * cols["N"] * cols["D"] / 8 + np.sqrt(cols["a b"]) + 3)
  with pytest.raises(expr.ExprError, match="unknown column"):
    expr.Expression("N * E").evaluate(cols)
  with pytest.raises(expr.ExprError, match="numbers only"):
    expr.Expression("N * 'x'")


def test_name_format_fields():
  fmt = expr.NameFormat("N={N:si},D={D}", ["N", "D"])
  assert fmt.format({"N": 1073741824, "D": 20}) == "N=1.07B,D=20"
  with pytest.raises(expr.ExprError, match="not one of fidelity.columns"):
    expr.NameFormat("{E}", ["N"])
  with pytest.raises(expr.ExprError, match="only"):
    expr.NameFormat("{N:.2f}", ["N"])
