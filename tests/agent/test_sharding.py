"""Sharded = unsharded, on 8 fake CPU devices (in a subprocess: the device count is fixed when jax
starts): the env, SFT and RL on meshes (1,1), (8,1) and (4,2), and a checkpoint moved between
meshes. One run of `python -m autollmr.sharding_check`; the tests read its output."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from autollmr import sharding

pytestmark = pytest.mark.rehearsal  # its own command: pytest -q -m rehearsal tests (CI runs it)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MESHES = ("1x1_replicated", "8x1_fsdp", "4x2_tp")
# Key biases add the same q.b to every key's logit of a query: softmax ignores it, so their
# gradient is zero up to rounding, and Adam turns that rounding noise into lr-sized steps whose
# sign depends on the reduction order. Everything else must agree.
SHIFT_INVARIANT = ("['k']['bias']", "['ptr_k']['bias']")


@pytest.fixture(scope="module")
def check(tmp_path_factory):
  out = tmp_path_factory.mktemp("sharding")
  # the session's XLA flags (tests/conftest.py: fast compiling) plus 8 fake devices
  env = dict(os.environ, JAX_PLATFORMS="cpu", AUTOLLMR_DATA="none", AUTOLLMR_NO_PROGRESS="1",
             XLA_FLAGS=os.environ["XLA_FLAGS"] + " --xla_force_host_platform_device_count=8")
  r = subprocess.run([sys.executable, "-m", "autollmr.sharding_check", str(out)], cwd=ROOT,
                     env=env, capture_output=True, text=True, timeout=1200)
  assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-6000:]
  with open(out / "results.json") as f:
    res = json.load(f)
  assert res["devices"] == 8
  return out, res


def _params(out, name):
  with np.load(out / f"params_{name}.npz") as z:
    return dict(z)


def _assert_same_params(a, b, lr, steps):
  assert a.keys() == b.keys()
  for k in a:
    if any(s in k for s in SHIFT_INVARIANT):
      np.testing.assert_array_less(np.abs(a[k] - b[k]), 2 * lr * steps + 1e-6, err_msg=k)
    else:
      np.testing.assert_allclose(a[k], b[k], rtol=1e-4, atol=1e-5, err_msg=k)


def _assert_same_metrics(rows, ref, keys):
  assert [r["step"] for r in rows] == [r["step"] for r in ref] == [1, 2, 3]
  for r, q in zip(rows, ref):
    for k in keys:
      np.testing.assert_allclose(r[k], q[k], rtol=1e-4, atol=1e-5, err_msg=k)


def test_env_outputs_identical_sharded_and_unsharded(check):
  _, res = check
  for mesh, r in res["env"].items():
    assert r["identical"], mesh
    assert "data" in r["spec"], r  # the episode axis really was split
    assert r["n_arrays"] > 20


def test_sft_same_losses_and_params_on_every_mesh(check):
  out, res = check
  ref = res["sft"]["1x1_replicated"]
  for mesh in MESHES[1:]:
    _assert_same_metrics(res["sft"][mesh], ref, ("loss", "ce", "acc", "grad_norm"))
    _assert_same_params(_params(out, f"sft_{mesh}"), _params(out, "sft_1x1_replicated"),
                        lr=1e-3, steps=3)


def test_rl_same_losses_and_params_on_every_mesh(check):
  out, res = check
  ref = res["rl"]["1x1_replicated"]
  for mesh in MESHES[1:]:
    _assert_same_metrics(res["rl"][mesh], ref, ("loss", "kl", "entropy", "regret", "turns"))
    _assert_same_params(_params(out, f"rl_{mesh}"), _params(out, "rl_1x1_replicated"),
                        lr=1e-4, steps=3)


def test_checkpoint_written_on_one_mesh_restores_on_another(check):
  out, res = check
  r = res["restore"]
  assert r["same_sharding"] and r["n_arrays"] > 50
  assert any("model" in s for s in r["tp_specs"])  # restored tensor-parallel, not replicated
  # (8,1) fsdp to step 2, resumed on (4,2) tp to step 3 = a straight (1,1) run
  assert res["resumed"]["step"] == 3
  _assert_same_metrics(res["resumed"]["metrics"], res["sft"]["1x1_replicated"], ("loss",))
  _assert_same_params(_params(out, "sft_resumed"), _params(out, "sft_1x1_replicated"),
                      lr=1e-3, steps=3)


class _Mesh:  # what sharding.spec and check_divisible read of a mesh
  def __init__(self, data, model):
    self.shape = {"data": data, "model": model}


def test_logical_rules():
  m = _Mesh(4, 2)
  assert sharding.spec(("embed", "mlp"), (16, 32), m, "replicated") == sharding.P(None, None)
  assert sharding.spec(("embed", "mlp"), (16, 32), m, "fsdp") == sharding.P("data", None)
  assert sharding.spec(("embed", "mlp"), (16, 32), m, "tp") == sharding.P(None, "model")
  # an axis once per array; a size the axis does not divide stays whole
  assert sharding.spec(("embed", "embed"), (16, 16), m, "fsdp") == sharding.P("data", None)
  assert sharding.spec(("embed", "heads"), (6, 3), m, "fsdp") == sharding.P(None, None)
  assert sharding.spec(("embed", "heads", "kv"), (16, 3, 8), m, "tp") == sharding.P(None, None,
                                                                                    None)


def test_mesh_flags_and_errors():
  from configs import common
  c = common.base()
  assert sharding.mesh_shape(c.mesh, 8) == (8, 1)
  c.mesh.model = 2
  assert sharding.mesh_shape(c.mesh, 8) == (4, 2)
  c.mesh.data = 8
  with pytest.raises(ValueError, match="--config.mesh.data"):
    sharding.mesh_shape(c.mesh, 8)
  with pytest.raises(ValueError, match="--config.rl.tasks_per_update"):
    sharding.check_divisible(6, _Mesh(4, 1), "--config.rl.tasks_per_update x ...")
  sharding.check_divisible(8, _Mesh(4, 1), "--config.sft.batch_size")
