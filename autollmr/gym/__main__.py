"""LLMConfig-Gym command line: what tables exist and what is in them.

  python -m autollmr.gym describe [--json] [--spec PATH ...] [--tables a,b] [--data_dir DIR]
"""
from __future__ import annotations

import json

from absl import flags

from autollmr import cli
from autollmr import errors
from autollmr.gym import sources

_JSON = flags.DEFINE_bool("json", False, "Print JSON instead of a readable table.")
_SPEC = flags.DEFINE_multi_string("spec", [], "A JSON table spec of your own CSV (repeatable).")
_TABLES = flags.DEFINE_list("tables", None, "Built-in tables to describe (default: all available).")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Data directory (else $AUTOLLMR_DATA, ...).")


def describe(names, spec_paths, data_dir=None) -> list[dict]:
  out = [sources.load_table(n, data_dir).describe() for n in names]
  out += [sources.load_spec_table(p).describe() for p in spec_paths]
  return out


def format_text(descs: list[dict]) -> str:
  lines = []
  for d in descs:
    lines.append(f"{d['name']}  [{d['provenance']}; family {d['family']}]  objective "
                 f"{d['objective']} ({d['direction']}); cost in {d['cost_unit']}")
    lines.append(f"  {'fidelity':<22} {'configs':>8} {'valid':>7} {'flagged':>8} "
                 f"{'cost':>11} {'best':>10}")
    for f in d["fidelities"]:
      best = "-" if f["best_value"] is None else f"{f['best_value']:.4g}"
      lines.append(f"  {f['name']:<22} {f['n_configs']:>8} {f['n_valid']:>7} "
                   f"{f['n_flagged']:>8} {f['cost']:>11.4g} {best:>10}")
    rhos = ", ".join(f"{p['from']}->{p['to']}: "
                     + ("n/a" if p["spearman"] is None else f"{p['spearman']:.2f}")
                     + f" (n={p['n_shared']})" for p in d["adjacent_spearman"])
    lines.append(f"  Spearman over shared configs: {rhos}")
    if d["excluded_rows"]:
      lines.append(f"  excluded source rows: {d['excluded_rows']}")
    lines.append("")
  return "\n".join(lines)


def main(argv):
  if argv[1:] != ["describe"]:
    raise errors.UserError(f"expected the verb 'describe', got {argv[1:]}: python -m "
                           "autollmr.gym describe [--json] [--spec PATH ...] [--tables a,b]")
  if _TABLES.value is not None:
    names = _TABLES.value
  else:  # --spec alone describes only those specs
    names = [] if _SPEC.value else sources.available_tables(_DATA_DIR.value)
  descs = describe(names, _SPEC.value, _DATA_DIR.value)
  print(json.dumps(descs, indent=1) if _JSON.value else format_text(descs))


if __name__ == "__main__":
  cli.run(main)
