"""The house keeps its shape: import layers and no circles (import-linter), no imports placed in
functions (but the optional SMAC's), and none of the options tried and removed."""
import os
import re
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REMOVED = ("model.surrogate", "raw_features", "global_to_candidates", "robust_ties",
           "cut_after_best", "target_rule", "aux_objectives", "synthetic_train",
           "rl.temperature", "rl.baseline", "rl.priority", "train_params", "turn_level",
           "rl.shaping", "adv_std", "low_rho_weight", "curriculum_frac", "member_batches",
           "model.pool", "surrogate_coef")


def test_import_contracts_hold():
  lint = os.path.join(os.path.dirname(sys.executable), "lint-imports")
  r = subprocess.run([lint, "--config", os.path.join(REPO, ".importlinter")], cwd=REPO,
                     capture_output=True, text=True, timeout=300)
  assert r.returncode == 0 and "0 broken" in r.stdout, r.stdout[-3000:] + r.stderr[-2000:]


def _sources(*folders):
  for folder in folders:
    for root, _, files in os.walk(os.path.join(REPO, folder)):
      for f in files:
        if f.endswith(".py"):
          yield os.path.join(root, f)


def test_no_imports_inside_functions_but_the_optional_smac():
  found = []
  for path in _sources("autollmr", "configs"):
    for n, line in enumerate(open(path), 1):
      if re.match(r"\s+(import \w|from \S+ import )", line) and "optional: [peers]" not in line:
        found.append(f"{os.path.relpath(path, REPO)}:{n}: {line.strip()}")
  assert not found, found


def test_removed_options_are_gone():
  here = os.path.abspath(__file__)
  for path in list(_sources("autollmr", "configs", "tests")) + [
      os.path.join(REPO, p) for p in ("README.md", "WORKSPACE.md", "data_tables/README.md")]:
    if path == here:
      continue
    text = open(path).read()
    assert not [o for o in REMOVED if o in text], path
