"""Fixtures of the advisor's tests: a lab's sweep exported from a synthetic table, and one agent
workdir per test session."""
import os

import pytest

from autollmr.advisor import sweep as sweep_lib
from autollmr.gym import sources

TABLE = "synthetic_steplaw_dense"
TARGET = "N=1.07B,D=20B"


@pytest.fixture(scope="session")
def table():
  return sources.load_table(TABLE, "none")


@pytest.fixture
def sweep(tmp_path, table):
  """A lab's CSV of runs: the table with every TARGET row removed (kept in withheld.csv; the
  configs, objective empty, in planned.csv: the spec's 'candidates')."""
  return sweep_lib.export_table(table, str(tmp_path / "sweep"), withhold=TARGET)


@pytest.fixture(scope="session")
def agent_dir(tmp_path_factory):
  """A workdir holding a policy checkpoint (untrained: these tests check the plumbing, not
  the policy's quality) and its config.json, as `python -m autollmr.main` leaves them."""
  from flax import nnx
  import orbax.checkpoint as ocp

  from autollmr.agent import checkpoints
  from autollmr.agent import optim
  from configs import sft as sft_config
  d = str(tmp_path_factory.mktemp("agent"))
  c = sft_config.get_config("tiny")
  with open(os.path.join(d, "config.json"), "w") as f:
    f.write(c.to_json(indent=1))
  _, state, _ = optim.sft_state(c)
  mngr = checkpoints.sft_manager(d, 1)
  mngr.save(0, args=ocp.args.Composite(state=ocp.args.StandardSave(nnx.to_pure_dict(state))),
            force=True)
  mngr.wait_until_finished()
  mngr.close()
  return d
