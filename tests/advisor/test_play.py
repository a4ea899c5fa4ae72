"""advise --play K --reveal FILE: the K-run back-test against withheld results (each run chosen
after the earlier runs' true values), its regrets against a hand computation, its mistakes as one
`error:` line; the advisor's speed measures (compile cache, lazy imports, bucketed shapes)."""
import functools
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from autollmr.advisor import answer
from autollmr.evaluation import choosers
from autollmr.peers import registry

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TARGET = "N=1.07B,D=20B"  # the target of the `sweep` fixture (conftest.py)


def _by_hand(sweep, table, features: dict) -> tuple[float, float]:
  """(true value, regret) of a config from withheld.csv alone (the CSV has no target runs):
  (y - min) / (max - min) over the withheld rows (the objective is minimized)."""
  held = pd.read_csv(sweep["withheld"])
  cols = list(table.config_feature_names)
  x = np.array([features[n] for n in cols])
  row = held[np.all(np.isclose(held[cols].to_numpy(), x, atol=1e-5), 1)]
  assert len(row) == 1
  v, y = held[table.objective].to_numpy(), float(row[table.objective].iloc[0])
  return y, (y - v.min()) / (v.max() - v.min())


def _check_runs(out, sweep, table, k):
  runs = out["runs"]
  assert [r["run"] for r in runs] == list(range(1, k + 1))
  assert len({r["label"] for r in runs}) == k  # k different configs
  best = np.inf
  for r in runs:
    y, regret = _by_hand(sweep, table, r["features"])
    best = min(best, regret)
    assert np.isclose(r["value"], y, rtol=1e-6)
    assert np.isclose(r["regret"], regret, atol=1e-6)
    assert np.isclose(r["best_regret"], best, atol=1e-6)
  b = [r["best_regret"] for r in runs]
  assert all(x >= y for x, y in zip(b, b[1:]))  # the best so far never gets worse


def test_play_peer_and_agent_against_withheld_rows(sweep, table, agent_dir):
  out = answer.play(sweep["spec"], TARGET, 3, sweep["withheld"], method="topk_transfer")
  _check_runs(out, sweep, table, 3)
  n = len(pd.read_csv(sweep["withheld"]))
  assert out["revealed_n"] == out["candidates"] == n and out["left_out_no_reveal"] == 0
  assert "best so far: regret" in answer.format_text(out)

  out = answer.play(sweep["spec"], TARGET, 3, sweep["withheld"], agent_dir=agent_dir)
  _check_runs(out, sweep, table, 3)
  assert out["policy"]["played"] == "sft" and out["evidence_kind"] == "saliency"
  # The first question is advise's (same env, budget and turns); later ones see true values.
  first = answer.advise(sweep["spec"], TARGET, k=3, agent_dir=agent_dir)
  assert out["runs"][0]["label"] == first["suggestions"][0]["label"]


class Spy:
  """A peer that records what it sees: the known target results at each question."""
  seen, told = [], []

  def __init__(self, ctx, seed):
    del ctx, seed

  def act(self, view):
    known = view["is_target_A"] & view["known_A"]
    Spy.seen.append({int(a): float(view["value_A"][a]) for a in np.flatnonzero(known)})
    return int(np.flatnonzero(view["is_target_A"] & ~view["known_A"])[-1])

  def tell(self, action, value):
    Spy.told.append((int(action), value))


def test_play_shows_each_earlier_true_result(sweep, table, monkeypatch):
  monkeypatch.setitem(registry.PEERS, "spy", Spy)
  Spy.seen, Spy.told = [], []
  out = answer.play(sweep["spec"], TARGET, 3, sweep["withheld"], method="spy")
  assert [len(s) for s in Spy.seen] == [0, 1, 2]  # every earlier run, revealed
  assert Spy.seen[2] == dict(Spy.told[:2])  # as told: the normalized true value
  # The scores order the runs as their true values do (higher score = lower loss).
  (a0, s0), (a1, s1) = Spy.told[:2]
  v0, v1 = out["runs"][0]["value"], out["runs"][1]["value"]
  assert v0 != v1 and (s0 > s1) == (v0 < v1)
  _check_runs(out, sweep, table, 3)


def test_play_mistakes_end_in_one_line(sweep, tmp_path, run_command, one_error_line):
  base = ["autollmr.advise", f"--spec={sweep['spec']}", f"--target={TARGET}",
          "--method=topk_transfer"]
  assert "needs --reveal" in one_error_line(run_command(*base, "--play=2"))
  ok = run_command(*base, "--play=2", f"--reveal={sweep['withheld']}")
  assert ok.returncode == 0, ok.stderr[-2000:]
  assert ok.stdout.count("best so far: regret") == 2
  with pytest.raises(answer.Refusal, match="--play must be >= 1"):
    answer.play(sweep["spec"], TARGET, 0, sweep["withheld"], method="random")
  held = pd.read_csv(sweep["withheld"])
  with pytest.raises(answer.Refusal, match=f"only {len(held)} open candidate configs"):
    answer.play(sweep["spec"], TARGET, 200, sweep["withheld"], method="random")
  with pytest.raises(answer.Refusal, match="no rows at"):  # the runs, not the withheld rows
    answer.play(sweep["spec"], TARGET, 2, sweep["runs"], method="random")
  with pytest.raises(answer.Refusal, match="no such file"):
    answer.play(sweep["spec"], TARGET, 2, str(tmp_path / "nope.csv"), method="random")
  # Planned configs without a withheld row are left out of the play (and counted).
  held.iloc[:90].to_csv(tmp_path / "some.csv", index=False)
  out = answer.play(sweep["spec"], TARGET, 2, str(tmp_path / "some.csv"), method="trend")
  assert out["candidates"] == 90 and out["left_out_no_reveal"] == len(held) - 90
  assert f"Left out: {len(held) - 90} candidate configs" in answer.format_text(out)


def test_two_candidate_buckets_give_the_same_answer(sweep, agent_dir, monkeypatch):
  """The policy's candidate axis is padded to a bucket (a multiple of 256): a larger bucket (more
  absent, masked candidates) changes no suggestion and no probability."""
  a = answer.advise(sweep["spec"], TARGET, k=2, agent_dir=agent_dir)
  monkeypatch.setattr(choosers, "policy_inputs", functools.partial(choosers.policy_inputs,
                                                                   pad=512))
  b = answer.advise(sweep["spec"], TARGET, k=2, agent_dir=agent_dir)
  assert [s["label"] for s in a["suggestions"]] == [s["label"] for s in b["suggestions"]]
  np.testing.assert_allclose([s["policy_prob"] for s in a["suggestions"]],
                             [s["policy_prob"] for s in b["suggestions"]], rtol=1e-5)


def test_advise_caches_compiles_and_imports_no_peer_library(tmp_path):
  """The command's compile cache (under $AUTOLLMR_CACHE, small programs too) and its imports: the
  agent's path loads none of sklearn, optuna, smac, matplotlib, orbax (a cached policy needs no
  checkpoint: tests/advisor/test_policy_cache.py)."""
  env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_PERSISTENT_CACHE")
         and k != "JAX_COMPILATION_CACHE_DIR"}
  code = ("import sys, jax; from autollmr import advise; from autollmr.advisor import answer; "
          "print(answer.use_compile_cache()); "
          "print(jax.config.jax_persistent_cache_min_compile_time_secs); "
          "print(sorted(m for m in ('sklearn', 'optuna', 'smac', 'matplotlib', 'orbax') "
          "if m in sys.modules))")
  r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                     timeout=120, env=dict(env, AUTOLLMR_CACHE=str(tmp_path)))
  assert r.returncode == 0, r.stderr[-2000:]
  assert r.stdout.split("\n")[:3] == [str(tmp_path / "jax"), "0.0", "[]"]
