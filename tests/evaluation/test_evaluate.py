"""The side-by-side evaluation: closed-form random search, the four files, a tiny pipeline run."""
import json
import os
import subprocess
import sys

import numpy as np

from autollmr import pipeline
from autollmr.evaluation import pool as pool_lib
from autollmr.evaluation import report
from autollmr.evaluation import runs
from autollmr.evaluation import stats
from autollmr.gym import substudies
from autollmr.gym import tasks as tasks_lib
from autollmr.gym.table import Table
from autollmr.peers import episode
from autollmr.peers import registry
from configs import common

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _table(C=40, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(C, 2)).astype(np.float32)
  v = np.stack([(x ** 2).sum(1) + 0.3 * rng.normal(size=C) + 2.0 * f for f in range(3)])
  valid = np.ones((3, C), bool)
  valid[0, :5] = False
  return Table(
      name="bowl", family="other", provenance="synthetic", objective="loss", direction="min",
      fidelity_names=("s", "m", "l"), config_feature_names=("a", "b"),
      fidelity_feature_names=("log10_N",), config_features_CxD=x,
      fidelity_features_FxG=np.array([[7.0], [8.0], [9.0]], np.float32),
      values_FxC=np.where(valid, v, np.nan).astype(np.float32), valid_FxC=valid,
      flagged_FxC=np.zeros((3, C), bool), cost_F=np.array([1.0, 10.0, 100.0]), cost_unit="u")


def test_random_search_matches_its_closed_form():
  table = _table()
  split = tasks_lib.curate(table, budgets=(1, 2, 3, 5))
  cfg = common.base()
  seeds = list(range(300))
  recs = runs.run_peers(table, split["test"], ["random"], seeds, cfg)
  for task in split["test"]:
    got = np.array([r["regret"] for r in recs if r["budget"] == task.budget])
    want = stats.random_search_expectation(table, task)
    lo, hi = stats.bootstrap_ci(got, n_boot=2000)
    margin = 0.25 * (hi - lo)  # the CI of a mean over 300 seeds, with a little slack
    assert lo - margin <= want <= hi + margin, (task.budget, want, lo, hi)


def test_write_results_writes_the_five_files(tmp_path):
  table = _table()
  split = tasks_lib.curate(table, budgets=(1, 3))
  cfg = common.base()
  recs = runs.run_peers(table, split["test"], ["random", "topk_transfer", "trend"], range(4), cfg)
  report.write_results(recs, str(tmp_path), "python -m test")
  for f in ("leaderboard.json", "leaderboard.md", "regret_vs_budget.png", "cost_to_target.md",
            "summary.md"):
    assert (tmp_path / f).stat().st_size > 0, f
  rows = json.loads((tmp_path / "leaderboard.json").read_text())
  keys = {"method", "family", "task", "budget", "regret_mean", "regret_iqm", "regret_ci95",
          "percentile_mean", "cost_mean", "invalid_rate", "repeat_rate", "decision_ms_mean", "n"}
  assert keys <= set(rows[0])
  assert all(r["n"] == 4 and r["cost_mean"] <= r["budget"] + 1e-6 for r in rows)
  md = (tmp_path / "leaderboard.md").read_text()
  assert "python -m test" in md and "**" in md and "topk_transfer" in md
  summary = (tmp_path / "summary.md").read_text()  # the README's table: overall, every K
  overall = stats.overall_table(recs)
  want = float(overall[("trend", 3)][0].mean())
  assert "| K=1 | K=3 |" in summary and f"{want:.4f}" in summary.split("| trend |")[1]
  assert "at commit " in summary and "python -m test" in summary


def test_cost_to_target_counts_runs():
  recs = [dict(method="m", family="f", budget=5, anytime_regret=[0.5, 0.005, 0.0], seed=0),
          dict(method="m", family="f", budget=5, anytime_regret=[0.5, 0.2, 0.1, 0.1, 0.1], seed=1)]
  (mean, frac), = stats.cost_to_target(recs).values()
  assert mean == (2 + 6) / 2 and frac == 0.5


def test_eval_pipeline_tiny(tmp_path):
  """The eval command end to end on synthetic tables, two families, two budgets, two seeds."""
  env = dict(os.environ, AUTOLLMR_DATA="none", AUTOLLMR_NO_PROGRESS="1",
             AUTOLLMR_CACHE=str(tmp_path / "cache"))
  cmd = [sys.executable, "-m", "autollmr.main", "--config=configs/eval.py",
         f"--workdir={tmp_path / 'w'}", "--config.tasks.families=synthetic_steplaw_dense,grpo",
         "--config.tasks.budgets=1,2", "--config.eval.seeds=2",
         "--config.eval.methods=random,topk_transfer,steplaw_formula,optuna_tpe_hyperband"]
  out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  assert "synthetic tables" in out.stdout and "K=2" in out.stdout
  res = tmp_path / "w" / "results"
  for f in ("leaderboard.json", "leaderboard.md", "regret_vs_budget.png", "cost_to_target.md",
            "summary.md"):
    assert (res / f).exists(), f
  for f in ("landscape_synthetic_steplaw_dense.png", "landscape_grpo.png",
            "transcripts/queries.jsonl"):
    assert (res / f).stat().st_size > 0, f
  md = sorted((res / "transcripts").glob("*.md"))  # no agent here: a classical peer's episodes
  assert len(md) == 4 and all("topk_transfer" in p.name for p in md), md
  assert "## Queries" in md[0].read_text() and not (res / "learning_curves.png").exists()
  rows = json.loads((res / "leaderboard.json").read_text())
  assert {r["method"] for r in rows} == {"random", "topk_transfer", "steplaw_formula",
                                         "optuna_tpe_hyperband"}
  assert {r["family"] for r in rows if r["method"] == "steplaw_formula"} == {
      "synthetic_steplaw_dense"}
  again = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert "[eval] exists" in again.stdout  # a second run resumes instead of recomputing
  bad = subprocess.run(cmd[:-1] + ["--config.eval.methods=random,nope"], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=300)
  assert bad.returncode != 0 and "nope" in bad.stderr


def test_budget_free_prefixes_equal_direct_runs(monkeypatch):
  """A BUDGET_FREE peer's smaller budgets are read off its largest-budget episode: the records must
  equal playing each budget on its own (here every budget's task is evaluated alone)."""
  table = _table(C=60, seed=3)
  split = tasks_lib.curate(table, budgets=(1, 2, 4))
  cfg = common.base()
  methods = ["topk_transfer", "trend", "optuna_tpe"]
  assert set(methods) <= registry.BUDGET_FREE
  keys = ("method", "budget", "seed", "regret", "percentile", "cost", "n_invalid", "n_repeat",
          "n_turns", "anytime_regret")
  played = []
  run = episode.run_episode
  monkeypatch.setattr(episode, "run_episode", lambda *a: played.append(1) or run(*a))
  shared = runs.run_peers(table, split["test"], methods, range(3), cfg)
  assert len(played) == 3 * 3  # one episode per method and seed: budgets 1 and 2 are prefixes
  direct = [r for t in split["test"] for r in runs.run_peers(table, [t], methods, range(3), cfg)]
  pick = lambda rs: sorted(tuple(r[k] if k != "anytime_regret" else tuple(r[k]) for k in keys)
                           for r in rs)
  assert len(shared) == len(direct) == 3 * 3 * 3
  assert pick(shared) == pick(direct)


def test_ablation_per_training_seed_table():
  """report.per_training_seed_md (ablate --train_seeds): each training seed's overall regret
  (families weigh 1), then mean +- sd."""
  recs = []
  for ts, (ra, rb) in enumerate([(0.1, 0.3), (0.3, 0.5)]):  # overall 0.2, then 0.4
    for seed in range(3):
      recs += [dict(method="distill+rl", family="a", task="t", budget=1, seed=seed, regret=ra,
                    train_seed=ts),
               dict(method="distill+rl", family="b", task="t", budget=1, seed=seed, regret=rb,
                    train_seed=ts)]
  recs.append(dict(method="random", family="a", task="t", budget=1, seed=0, regret=0.9))
  md = report.per_training_seed_md(recs, ["distill+rl", "rl_only"])
  assert "| distill+rl | 0 | 0.2000 |" in md and "| distill+rl | 1 | 0.4000 |" in md
  assert f"| distill+rl | mean +- sd (2) | 0.3000 +- {np.std([0.2, 0.4], ddof=1):.4f} |" in md
  assert "rl_only" not in md and "random" not in md


def test_sub_study_table_drops_configs_at_every_fidelity():
  t = _table(C=40)
  a, b = substudies.sub_study_table(t, 0.5, seed=3), substudies.sub_study_table(t, 0.5, seed=3)
  assert np.array_equal(a.valid_FxC, b.valid_FxC)  # the same draw for every method and run
  dropped_C = ~a.valid_FxC.any(0) & t.valid_FxC.any(0)
  assert 5 < dropped_C.sum() < 35  # about half of the configs
  assert not (a.valid_FxC & ~t.valid_FxC).any()  # nothing becomes valid
  kept_C = a.valid_FxC[2]  # a config is kept or dropped at every fidelity alike
  assert np.array_equal(a.valid_FxC[1], kept_C) and not (a.valid_FxC[0] & ~kept_C).any()
  assert (a.valid_FxC.sum(1) >= 2).all()
  task = tasks_lib.Task(table="bowl", target="l", visible=("s", "m"), budget=1.0, rho=1.0,
                        split="test", max_turns=3)
  cfg = common.base()
  cfg.eval.sub_studies = 1
  params, sizes = runs.build_eval_params(a, [task], cfg)
  assert sizes.num_candidates % 64 == 0  # padded: sub-studies of a table share one compile
  y = np.where(kept_C, t.values_FxC[2], np.inf)
  assert np.isclose(float(params.y_star_N[0]), y.min())  # y* of the sub-study, not the table
  for bad in (0.0, 1.0):
    try:
      substudies.sub_study_table(t, bad, seed=0)
      raise AssertionError("no error")
    except ValueError as e:
      assert "sub_drop" in str(e)


def test_peer_workers_give_the_same_records(tmp_path, monkeypatch):
  """The peers in two worker processes (pool_lib.peer_pool) give the same records, in the same
  order, as in this process: on the standard split and on sub-studies (a job is one peer on every
  sub-study of a table), a learned peer included (its training sources travel with the job)."""
  monkeypatch.setenv("AUTOLLMR_NO_PROGRESS", "1")
  cfg = common.base()
  cfg.data_dir = "none"
  cfg.tasks.families = "synthetic_steplaw_dense,grpo"
  cfg.tasks.budgets = "1,3"
  tables = pipeline.load_tables(cfg)
  splits = pipeline.curate_all(cfg, tables)
  methods, seeds = ["random", "topk_transfer", "meta_regressor"], [0, 1]
  w = str(tmp_path)  # no agent here: peers only
  hashseed = os.environ.get("PYTHONHASHSEED")
  serial = pipeline.eval_all(cfg, w, tables, splits, methods, seeds)
  serial_sub = pipeline.eval_sub_studies(cfg, w, tables, splits, methods, seeds, 2)
  with pool_lib.peer_pool(2) as pool:
    assert pool is not None
    par = pipeline.eval_all(cfg, w, tables, splits, methods, seeds, pool)
    par_sub = pipeline.eval_sub_studies(cfg, w, tables, splits, methods, seeds, 2, pool)
  drop = lambda rs: [{k: v for k, v in r.items() if k != "decision_ms"} for r in rs]
  assert len(serial) == len(methods) * len(seeds) * sum(len(s["test"]) for s in splits.values())
  assert drop(par) == drop(serial) and drop(par_sub) == drop(serial_sub)
  assert {r["task"][-2:] for r in serial_sub} == {"~0", "~1"}
  assert os.environ.get("PYTHONHASHSEED") == hashseed  # the workers' setting does not stay
  cfg.eval.workers = -2
  try:
    pool_lib.eval_workers(cfg)
    assert False, "workers=-2 accepted"
  except ValueError as e:
    assert "--config.eval.workers" in str(e)


def test_versus_best_peer_counts_below_level_behind():
  """The agent against the family's best peer: below, level (both 0) or behind, per family."""
  recs = []
  for f, vals in {"a": dict(x_agent=0.1, p=0.2, q=0.3), "b": dict(x_agent=0.0, p=0.0, q=0.1),
                  "c": dict(x_agent=0.2, p=0.3, q=0.15)}.items():
    for m, v in vals.items():
      recs += [dict(method=m, family=f, task="t", budget=1, seed=s, regret=v) for s in range(2)]
  line, = stats.versus_best_peer(recs, [1])
  assert line.startswith("x_agent at K=1: overall 0.1000 against the best peer's 0.1667 (p)")
  assert ("below the best peer on 1 (a); level with the best peer on 1 (b); behind the best "
          "peer on 1 (c)") in line
  assert "## Agents against the best peer" in report.leaderboard_md(recs, "cmd")
