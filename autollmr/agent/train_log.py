"""Training logs: WORKDIR/<stage>/metrics.jsonl rows and TensorBoard scalars (process 0 only)."""
from __future__ import annotations

import json
import os

from autollmr import sharding


def log_row(path, tb, row):
  """Appends `row` to the metrics file at `path` and, as scalars tagged by its stage folder
  (sft, rl), to the TensorBoard writer `tb`."""
  if not sharding.is_main():
    return
  stage = os.path.basename(os.path.dirname(os.path.abspath(path)))
  with open(path, "a") as f:
    f.write(json.dumps(row) + "\n")
  for k, v in row.items():
    for name, x in (v.items() if isinstance(v, dict) else [("", v)]):
      if k != "step" and x is not None:
        tb.add_scalar(f"{stage}/{k}/{name}" if name else f"{stage}/{k}", x, row["step"])


def truncate(path, step):
  """Drops the rows after `step` (a resumed run rewrites what came after its checkpoint)."""
  if not sharding.is_main() or not os.path.exists(path):
    return
  with open(path) as f:
    rows = [line for line in f if json.loads(line)["step"] <= step]
  with open(path, "w") as f:
    f.writelines(rows)
