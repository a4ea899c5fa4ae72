"""python tests/fork_commands.py < calls.json: runs each `python -m MODULE ARGS` of a JSON list
[[module, arg, ...], ...] in a forked child of this one process, which imported the heavy
libraries once (jax, flax, pandas, the pipeline: ~3 s a command on the 2-core CPU), and prints a
JSON list of [returncode, stdout, stderr]. Each child runs the module as `python -m` would
(runpy, __main__, its own absl flags: the parent defines none); jax's backends are started only in
the children (forking after that is unsafe). For tests of many short commands
(tests/e2e/test_cli.py)."""
import json
import os
import runpy
import sys
import tempfile
import traceback

from autollmr import pipeline  # noqa: F401  (the shared imports)


def run(call: list[str]) -> list:
  with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
    pid = os.fork()
    if pid == 0:  # the child: stdout / stderr to the files, then the command
      os.dup2(out.fileno(), 1)
      os.dup2(err.fileno(), 2)
      sys.argv = [call[0], *call[1:]]
      code = 0
      try:
        runpy.run_module(call[0], run_name="__main__", alter_sys=True)
      except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if not isinstance(e.code, int) and e.code is not None:
          print(e.code, file=sys.stderr)
      except BaseException:  # pylint: disable=broad-except
        traceback.print_exc()
        code = 1
      sys.stdout.flush()
      sys.stderr.flush()
      os._exit(code)
    _, status = os.waitpid(pid, 0)
    out.seek(0)
    err.seek(0)
    return [os.waitstatus_to_exitcode(status), out.read().decode(), err.read().decode()]


if __name__ == "__main__":
  print(json.dumps([run(c) for c in json.load(sys.stdin)]))
