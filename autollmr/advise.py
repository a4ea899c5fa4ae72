"""The advisor: the next runs to launch at an expensive fidelity, from your own cheap runs.

  python -m autollmr.advise --spec my_runs.json --target 1B --k 3 --agent workdir [--json]
  python -m autollmr.advise --spec my_runs.json --target 1B --k 3 --method topk_transfer
  python -m autollmr.advise --export steplaw_dense --withhold 'N=1.07B,D=20B' --out DIR
  python -m autollmr.advise --spec DIR/spec.json --target 'N=1.07B,D=20B' --play 5 \
      --reveal DIR/withheld.csv --agent workdir      # a back-test: K runs, each result revealed

Reads the runs through a table spec (data_tables/README.md); advisor/answer.py says how the k
suggestions come about and what each carries. --reveal PATH (tests and demos) scores each
suggestion against withheld target rows; with --play K it plays K runs against them, the method
seeing each earlier run's true value, and prints the regret of the best run so far after each.
Compiled programs are kept in a persistent cache ($AUTOLLMR_CACHE/jax, else ~/.cache/autollmr/jax)
and the agent's policy as exported programs ($AUTOLLMR_CACHE/policies; advisor/policy_cache.py),
so a repeated question answers in about 2.5 s on a 2-core CPU (docs/measurements.md).
"""
from __future__ import annotations

import gc

GC_WAS_ON = gc.isenabled()
gc.disable()  # a one-shot command: no cyclic GC while jax and flax import (~0.3 s of ~3 s)

import json  # noqa: E402  (after the line above: the imports below are what it speeds up)

from absl import flags  # noqa: E402

from autollmr import cli  # noqa: E402
from autollmr import errors  # noqa: E402
from autollmr.advisor import answer  # noqa: E402
from autollmr.advisor import sweep  # noqa: E402
from autollmr.gym import sources  # noqa: E402

if __name__ != "__main__" and GC_WAS_ON:  # imported, not run: the importer's GC as it was
  gc.enable()

_SPEC = flags.DEFINE_string("spec", None, "JSON table spec of your runs (data_tables/README.md).")
_TARGET = flags.DEFINE_string("target", None, "The fidelity to suggest runs at (its name, as "
                              "`python -m autollmr.gym describe --spec` prints it).")
_K = flags.DEFINE_integer("k", 3, "How many runs to suggest.")
_AGENT = flags.DEFINE_string("agent", None, "A workdir of `python -m autollmr.main` with a trained "
                             "policy.")
_POLICY = flags.DEFINE_enum("policy", "auto", ["auto", "rl", "sft"], "Which checkpoint of --agent "
                            "(auto: RL if present, else SFT).")
_METHOD = flags.DEFINE_string("method", None, "A peer instead of the agent (e.g. topk_transfer).")
_JSON = flags.DEFINE_bool("json", False, "Print JSON instead of text.")
_REVEAL = flags.DEFINE_string("reveal", None, "CSV of withheld target rows: each suggestion's true "
                              "value and regret (tests and demos); the results --play plays "
                              "against.")
_PLAY = flags.DEFINE_integer("play", None, "Play this many runs at --target against --reveal (a "
                             "back-test: each run chosen after the earlier runs' true values); "
                             "prints the regret of the best run so far after each.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of a stochastic peer.")
_EXPORT = flags.DEFINE_string("export", None, "Write this built-in table as a demo sweep "
                              "(runs.csv, spec.json) to --out, withholding --withhold.")
_WITHHOLD = flags.DEFINE_string("withhold", None, "With --export: the fidelity held out.")
_OUT = flags.DEFINE_string("out", None, "With --export: the output directory.")


def main(argv):
  if argv[1:]:
    raise errors.UserError(f"unexpected arguments {argv[1:]}")
  if _EXPORT.value:
    if not _OUT.value:
      raise errors.UserError("--export needs --out DIR")
    paths = sweep.export_table(sources.load_table(_EXPORT.value), _OUT.value, _WITHHOLD.value)
    print(json.dumps(paths, indent=1) if _JSON.value else "\n".join(
        f"{k}: {v}" for k, v in paths.items()))
    return
  if not _SPEC.value or not _TARGET.value:
    raise errors.UserError("--spec PATH and --target NAME are required")
  answer.use_compile_cache()
  if _PLAY.value is not None:
    out = answer.play(_SPEC.value, _TARGET.value, _PLAY.value, _REVEAL.value, _AGENT.value,
                      _METHOD.value, _POLICY.value, _SEED.value)
  else:
    out = answer.advise(_SPEC.value, _TARGET.value, _K.value, _AGENT.value, _METHOD.value,
                        _POLICY.value, _REVEAL.value, _SEED.value)
  print(json.dumps(out, indent=1) if _JSON.value else answer.format_text(out), flush=True)
  gc.freeze()  # the interpreter's exit then skips collecting jax's objects (~0.3 s)


if __name__ == "__main__":
  cli.run(main)
