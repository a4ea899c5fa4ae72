"""Tasks: what an episode is asked to do, and the train/test curation of them."""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Task:
  """(table, target fidelity t, visible fidelities V, reveal fraction rho, budget B, turns T).

  B is in expensive-run units: B = K buys K runs at the target fidelity.
  """
  table: str
  target: str
  visible: tuple[str, ...]
  rho: float = 1.0
  budget: float = 1.0
  max_turns: int = 8
  split: str = "train"  # train | val | test

  @property
  def name(self) -> str:
    return f"{self.table}:{self.target}:K={self.budget:g}:rho={self.rho:g}"
