"""What every command shares: absl flags, and a user's mistake as one line, not a traceback.

`cli.run(main)` is absl's app.run with two changes: a flag that does not parse, and an
errors.UserError (or app.UsageError) raised by `main`, end in one `error: ...` line on stderr and
exit status 2; `--help` exits 0.
"""
from __future__ import annotations

import json
import os
import sys

from absl import app
from absl import flags
from absl import logging
import ml_collections

from autollmr import errors

HELP = ("--help", "-h", "--helpshort", "--helpfull", "-?")


def fail(message: str):
  """One line on stderr, exit status 2."""
  print("error: " + " ".join(str(message).split()), file=sys.stderr)
  sys.exit(2)


def _parse(argv):
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    fail(e)
  except SystemExit:  # absl's help flags print the usage and exit 1
    if any(a in HELP for a in argv[1:]):
      sys.exit(0)
    raise


def run(main):
  def guarded(argv):
    logging.set_verbosity(logging.WARNING)  # jax and orbax are loud at INFO
    try:
      return main(argv)
    except (errors.UserError, app.UsageError) as e:
      fail(e)
  app.run(guarded, flags_parser=_parse)


def workdir_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a workdir of `python -m autollmr.main` was made with (its config.json)."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise errors.UserError(f"{workdir} has no config.json: not a workdir of "
                           "`python -m autollmr.main`")
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))
