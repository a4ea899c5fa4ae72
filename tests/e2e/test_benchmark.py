"""`python -m autollmr.benchmark --config=configs/benchmark.py:quick`: the `lofo` protocol's
folds in every regime on two tiny tables (one synthetic, one semi-synthetic: reported apart),
benchmark.json's schema, its headline recomputed by hand from records.csv, and a second run that
reuses every fold. The `standard` fold is one plain pipeline run (the smoke run's test plays one
end to end); which folds and regime configs the protocols make is checked here without training."""
import json

import numpy as np
import pandas as pd
import pytest

from autollmr import errors
from autollmr import pipeline
from autollmr import protocols
from autollmr.evaluation import bench_report
from autollmr.gym import landscape_stats
from autollmr.gym import sources
from autollmr.gym import tasks as tasks_lib
from configs import benchmark as benchmark_config

QUICK = ("autollmr.benchmark", "--config=configs/benchmark.py:quick",
         "--config.benchmark.protocols=lofo")


def test_folds_and_regimes(monkeypatch):
  """standard: one fold, the config as given; lofo: one fold per family holding its tables out;
  each regime's reveal share and sparse cap; unknown names are one error line."""
  monkeypatch.setenv("AUTOLLMR_DATA", "none")
  c = benchmark_config.get_config("quick")
  tables, _ = pipeline.build_tables(c)
  got = [(p, name, f.tasks.held_out) for p, name, f in protocols.folds(c, tables)]
  by_family = {t.family: n for n, t in tables.items()}
  assert got == [("standard", "standard", c.tasks.held_out)] + [
      ("lofo", f"lofo/{fam}", by_family[fam]) for fam in sorted(by_family)]
  for regime, rho, sparse_n in (("full", 1.0, 0), ("sparse", 1.0, c.benchmark.sparse_n),
                                ("online", 0.0, 0)):
    rc = protocols.regime_config(c, regime)
    assert (rc.tasks.test_rho, rc.eval.sparse_n) == (rho, sparse_n)
  assert c.tasks.test_rho == 1.0 and c.eval.sparse_n == 0  # a copy: the config is unchanged
  c.benchmark.protocols, c.benchmark.regimes = "standard,loo", "full"
  with pytest.raises(errors.UserError, match="protocols names"):
    protocols.folds(c, tables)
  c.benchmark.regimes = "full,offline"
  with pytest.raises(errors.UserError, match="regimes names"):
    protocols.regimes(c)


def test_quick_benchmark(tmp_path, run_command):
  work = tmp_path / "bench"
  r = run_command(*QUICK, f"--workdir={work}")
  assert r.returncode == 0, r.stderr[-3000:]
  out = json.loads((work / "benchmark.json").read_text())
  assert out["command"].startswith("python -m autollmr.benchmark") and out["commit"]
  assert out["protocols"] == ["lofo"] and out["regimes"] == ["full", "sparse", "online"]
  targets = pd.DataFrame(out["targets"])
  assert set(targets.columns) == {"table", "target", "protocol", "regime", "provenance"}
  # lofo: every level above a table's lowest is a target
  for name in ("synthetic_admire", "grpo"):
    t = sources.load_table(name, "none")
    lv = tasks_lib.levels(t)
    want = {n for f, n in enumerate(t.fidelity_names) if lv[f] > min(lv)}
    got = targets[(targets.table == name) & (targets.protocol == "lofo")]
    assert set(got.target) == want and len(got) == 3 * len(want)
  assert set(out["results"]) == {"synthetic", "semi-synthetic"}  # never mixed
  res = out["results"]["synthetic"]["lofo"]["methods"]
  for method in ("sft_agent", "random", "topk_transfer"):
    for regime in ("full", "sparse", "online"):
      for k in ("1", "2"):
        cell = res[method][regime][k]
        assert cell["ci_low"] <= cell["mean"] <= cell["ci_high"] and cell["mean_rank"] >= 1
  peer = res["sft_agent"]["full"]["1"]["peers"]["topk_transfer"]
  assert peer["diff_ci_low"] <= peer["diff"] <= peer["diff_ci_high"]

  # The headline by hand: mean over seeds per target, over targets per family, over families.
  rec = pd.read_csv(work / "records.csv")
  # `moved`: the nearest cheaper fidelity's best config has regret > 0.05 at the target
  for (name, target), moved in rec.groupby(["table", "target"]).moved.first().items():
    t = sources.load_table(name, "none")
    regret = landscape_stats.moved_regret(t, list(t.fidelity_names).index(target))
    assert moved == (regret > 0.05), (name, target, regret)
  assert rec.moved.any() and out["moved"]["synthetic"]["lofo"]["methods"]["sft_agent"]["full"]
  assert "### Targets where the optimum moved" in (work / "benchmark.md").read_text()
  sub = rec[(rec.provenance == "synthetic") & (rec.protocol == "lofo") & (rec.regime == "sparse")
            & (rec.K == 1)]
  for method in ("sft_agent", "topk_transfer"):
    m = sub[sub.method == method]
    fam = m.groupby(["family", "table", "target"]).regret.mean().groupby("family").mean()
    np.testing.assert_allclose(res[method]["sparse"]["1"]["mean"], fam.mean(), rtol=1e-9)
  agent = sub[sub.method == "sft_agent"].groupby("target").regret.mean()
  topk = sub[sub.method == "topk_transfer"].groupby("target").regret.mean()
  np.testing.assert_allclose(res["sft_agent"]["sparse"]["1"]["peers"]["topk_transfer"]["diff"],
                             (agent - topk).mean(), rtol=1e-9)  # one family: targets weigh equally
  assert "## synthetic data, protocol `lofo`" in (work / "benchmark.md").read_text()
  summary = (work / "summary.md").read_text()  # the README's results table
  assert "| sft_agent |" in summary and "- sft_agent, full, K = 1:" in summary
  readme = tmp_path / "README.md"
  readme.write_text(f"x\n{bench_report.README_BEGIN}\nold\n{bench_report.README_END}\ny\n")
  bench_report.update_readme(str(readme), summary)
  assert readme.read_text() == (f"x\n{bench_report.README_BEGIN}\n{summary}"
                                f"{bench_report.README_END}\ny\n")

  # Same command again: every fold's stages and results are reused, the numbers are the same.
  r2 = run_command(*QUICK, f"--workdir={work}")
  assert r2.returncode == 0 and "[sft] exists" in r2.stdout and "[eval] exists" in r2.stdout
  again = json.loads((work / "benchmark.json").read_text())
  assert again["results"] == out["results"]
