"""The multi-host rehearsal: the tiny pipeline in 2 processes x 2 fake CPU devices joined by
jax.distributed. Hosts that took different paths through the stages would meet different
collectives and fail here."""
import json

import pytest

pytestmark = pytest.mark.rehearsal  # its own command: pytest -q -m rehearsal tests (CI runs it)


def test_two_hosts_run_the_tiny_pipeline(tmp_path, run_command):
  r = run_command("autollmr.multihost_check", f"--workdir={tmp_path}", timeout=900)
  assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
  out = json.loads(r.stdout[r.stdout.rindex("{\n"):])
  assert out["processes"] == 2 and out["devices_per_process"] == 2
  assert all(out[k] for k in ("sft_log_rows_once", "rl_log_rows_once", "leaderboard",
                              "sft_ckpt_restores_in_one_process"))
