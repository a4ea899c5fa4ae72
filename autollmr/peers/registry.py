"""Every peer by name, which ones play online or read only what is known, and where each applies.

The one place that knows all peers; no peer imports it.
"""
from __future__ import annotations

import importlib.util

from autollmr.gym.table import Table
from autollmr.peers import classical
from autollmr.peers import fsbo
from autollmr.peers import learned
from autollmr.peers import optuna_peers
from autollmr.peers import smac_peers


def smac_available() -> bool:
  return importlib.util.find_spec("smac") is not None


PEERS: dict[str, type] = {
    "random": classical.RandomPeer,
    "topk_transfer": classical.TopKTransferPeer,
    "trend": classical.TrendPeer,
    "steplaw_formula": classical.StepLawPeer,
    "optuna_tpe": optuna_peers.OptunaTPEPeer,
    "optuna_tpe_hyperband": optuna_peers.OptunaHyperbandPeer,
    "meta_regressor": learned.MetaRegressorPeer,
    "fsbo": fsbo.FSBOPeer,
}
if smac_available():  # the optional [peers] extra
  PEERS.update(smac_hpo=smac_peers.SmacHPOPeer, smac_mf=smac_peers.SmacMFPeer)
OPTIONAL_PEERS = ("smac_hpo", "smac_mf")  # need the [peers] extra (SMAC3)

# Run on rho = 0 tasks (nothing revealed). random's picks never depend on reveals, so it serves
# both modes; the others read revealed cheap results and run on rho > 0 tasks.
ONLINE_PEERS = {"random", "optuna_tpe_hyperband", "smac_mf"} & set(PEERS)

# Peers whose decisions read only what is known, never the budget left or the turn: on a rho > 0
# task their first k target runs under budget K >= k are the ones they make under budget k. So
# the evaluation plays them once at the largest budget and reads each smaller budget off that
# episode's prefix (`episode.prefix_result`, only where the prefix is itself a complete, legal
# episode of budget k); tests/evaluation/test_evaluate.py checks this against direct runs. It cuts
# their
# time ~3x.
BUDGET_FREE = {"topk_transfer", "trend", "steplaw_formula", "optuna_tpe", "smac_hpo",
               "meta_regressor", "fsbo"}


def applicable(name: str, table: Table) -> bool:
  """Whether peer `name` can run on `table` (steplaw_formula needs Step Law's features)."""
  if name == "steplaw_formula":
    return classical.steplaw_ok(table)
  return name in PEERS
