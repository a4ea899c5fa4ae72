"""No agent episode ends without a target result while its budget could have bought one: in the
full, sparse (rho < 1) and online (rho = 0) regimes, greedy and sampled, untrained weights (the
mask, features.policy_mask, guarantees it whatever the weights)."""
import numpy as np

from autollmr import pipeline
from autollmr.agent import bank as bank_lib
from autollmr.agent import model as model_lib
from autollmr.agent import play as play_lib
from configs import sft as sft_config


def test_every_episode_buys_a_target_run(monkeypatch):
  c = sft_config.get_config("tiny")
  c.tasks.train_rhos = "1.0,0.3,0.0"  # full, sparse and online tasks in one bank: one compile
  monkeypatch.setenv("AUTOLLMR_DATA", "none")
  tables = pipeline.load_tables(c)
  splits = pipeline.curate_all(c, tables)
  bank = bank_lib.build_bank(c, tables, splits, "train", c.sim.max_cheap_rows,
                             c.sim.max_target_configs)
  n = len(bank["tasks"])
  assert {t.rho for t in bank["tasks"]} == {1.0, 0.3, 0.0}
  assert all(t.budget >= 1 for t in bank["tasks"])
  policy = model_lib.make_policy(c.model, seed=1)
  for greedy in (True, False):
    out = play_lib.play(policy, bank["params"], bank["sizes"], np.repeat(np.arange(n), 4),
                        np.tile(np.arange(4), n), bank["family_N"], greedy=greedy)
    assert (out["n_target"] >= 1).all(), (greedy, out["n_target"])
    assert (out["regret"] < 1).any()
