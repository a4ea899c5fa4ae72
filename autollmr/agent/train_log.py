"""Training logs: WORKDIR/<stage>/metrics.jsonl rows and TensorBoard scalars (process 0 only).
"""
from __future__ import annotations

import json
import os

from autollmr import sharding


def log_row(path, tb, row):
  if not sharding.is_main():
    return
  with open(path, "a") as f:
    f.write(json.dumps(row) + "\n")
  for k, v in row.items():
    for name, x in (v.items() if isinstance(v, dict) else [("", v)]):
      if k != "step" and x is not None:
        tb.add_scalar(f"sft/{k}/{name}" if name else f"sft/{k}", x, row["step"])


def truncate(path, step):
  if not sharding.is_main() or not os.path.exists(path):
    return
  with open(path) as f:
    rows = [line for line in f if json.loads(line)["step"] <= step]
  with open(path, "w") as f:
    f.writelines(rows)
