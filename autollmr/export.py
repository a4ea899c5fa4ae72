"""Teacher trajectories as chat JSONL: `python -m autollmr.export sft --workdir=DIR`.

  [--config=configs/lm.py] [--format=jsonl] [--out=PATH]

Reads DIR/sim (the simulate stage's kept teacher episodes, training tasks only) and writes one
JSON object per episode (text/export.py) to PATH (default DIR/export/sft.jsonl), to fine-tune an
external LLM on them.
"""
from __future__ import annotations

import json
import os

from absl import flags
from ml_collections import config_flags

from autollmr import cli
from autollmr import errors
from autollmr import pipeline
from autollmr.text import export as text_export

_CONFIG = config_flags.DEFINE_config_file("config", "configs/lm.py", "Config file.")
_WORKDIR = flags.DEFINE_string("workdir", "workdir", "The workdir holding sim/.")
_FORMAT = flags.DEFINE_enum("format", "jsonl", ["jsonl"], "Output format.")
_OUT = flags.DEFINE_string("out", "", "Output path (default WORKDIR/export/sft.jsonl).")


def main(argv):
  if argv[1:] != ["sft"]:
    raise errors.UserError(f"expected the verb 'sft', got {argv[1:]}")
  config = _CONFIG.value
  tables, splits = pipeline.build_tables(config)
  eps = text_export.episodes(config, _WORKDIR.value, tables, splits)
  path = _OUT.value or os.path.join(_WORKDIR.value, "export", "sft.jsonl")
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w") as f:
    for ep in eps:
      f.write(json.dumps(ep) + "\n")
  print(f"[export] {len(eps)} episodes, {sum(len(e['messages']) for e in eps)} messages: {path}")


if __name__ == "__main__":
  cli.run(main)
