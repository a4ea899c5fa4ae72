"""The benchmark's statistics (python -m autollmr.benchmark): episode records -> the numbers of
benchmark.json and the Markdown of benchmark.md. Plain functions over a pandas DataFrame; no JAX.

Records: one row per episode with the columns RECORD_COLUMNS: method, regime (full | sparse |
online), K (budget in expensive runs), protocol (lofo | standard), table, family, target, seed,
regret (normalized, in [0, 1], lower is better), provenance (real | semi-synthetic | synthetic).
Every function takes the records of ONE provenance (`by_provenance` splits them; `check_records`
refuses a mix), so a semi-synthetic or synthetic target never enters a real-data number.

Aggregation, per method, regime and K (the leaderboard's rule, evaluation/stats.py: families
weigh equally):
- a target is (protocol, table, target); its score is the mean regret over its seeds (targets may
  have different seed counts). Records of both protocols count a (table, target) once per
  protocol: split them on `protocol` to report each apart;
- a family's score is the mean of its targets' scores; the headline `mean` is the mean of the
  family scores: a family with 13 targets counts as much as one with 1. It is not the mean over
  records, which would weigh targets by their seeds and families by their targets;
- `ci_low`, `ci_high`: 95% percentile bootstrap over targets stratified by table: each replicate
  draws, within every (protocol, table), as many of its targets as it has, with replacement, and
  recomputes the headline; N_BOOT replicates from BOOT_SEED, the same draws for every method
  (differences are paired). A table with one target adds no spread;
- `mean_rank`: per target the methods that played it are ranked by score (1 = lowest regret, ties
  averaged), then aggregated like the score (targets -> families -> mean);
- `iqm`: rliable's interquartile mean of the target scores (each target equal), CI from the same
  draws;
- per agent against every other method (`peers`): `diff` = agent minus peer, the headline over the
  targets both played, so diff < 0 means the agent's regret is lower (the agent is better);
  `diff_ci_low`, `diff_ci_high` from the same paired draws; `win` / `tie` / `loss`: targets where
  the agent's score is below / within TIE_TOL of / above the peer's; `prob_improvement`: rliable's
  probability of improvement, P(a seed of the agent has lower regret than a seed of the peer)
  per target (Mann-Whitney, ties count half), aggregated like the score, with its CI;
- runs to regret <= REGRET_TARGET: per target the smallest K played whose score is <= it; `mean`
  over the targets that get there (families weigh equally among them); `n_never`: targets that do
  not within the largest K played;
- Friedman test and Nemenyi critical difference (autorank, nonparametric forced) at each K of
  CD_BUDGETS per regime, over the methods that played every target of the slice: targets are the
  blocks and weigh equally, as the test requires, so its mean ranks (`mean_rank_per_target`) can
  differ from the family-weighted `mean_rank`.
Own numpy bootstrap: rliable's StratifiedBootstrap resamples runs within the tasks of an equal-
size runs x tasks matrix, not targets within tables of unequal size (and its module needs arch <
8, which does not import under pandas 3); rliable.metrics is used as is.
"""
from __future__ import annotations

import contextlib
import io
import warnings

import autorank
import numpy as np
import pandas as pd
from rliable import metrics as rly_metrics
from scipy import stats as sp_stats

from autollmr.evaluation import stats

RECORD_COLUMNS = ("method", "regime", "K", "protocol", "table", "family", "target", "seed",
                  "regret", "provenance")
REGIMES = ("full", "sparse", "online")  # the order reports show them in
TARGET_KEY = ("protocol", "table", "target")  # one target; (protocol, table) is its stratum
TIE_TOL = 1e-3  # |agent - peer| target score at most this: a tie in win / tie / loss
REGRET_TARGET = stats.REGRET_TARGET  # runs to reach this regret (the leaderboard's 0.01)
N_BOOT = 2000  # bootstrap replicates
BOOT_SEED = 0  # the draws are fixed: same records, same numbers
CI_LEVEL = 0.95
ALPHA = 0.05  # Friedman / Nemenyi level
CD_BUDGETS = (1, 5)  # the K at which the Friedman test and the CD diagram are made


def check_records(df: pd.DataFrame) -> None:
  """ValueError unless df holds RECORD_COLUMNS, one provenance, regrets in [0, 1], one family per
  target and one row per (method, regime, K, target, seed)."""
  missing = [c for c in RECORD_COLUMNS if c not in df.columns]
  if missing:
    raise ValueError(f"records lack the columns {missing}")
  if df.empty:
    raise ValueError("no records")
  prov = sorted(df["provenance"].unique())
  if len(prov) > 1:
    raise ValueError(f"records mix provenances {prov}: split them with by_provenance first")
  reg = df["regret"].to_numpy(np.float64)
  if not np.all((reg >= 0) & (reg <= 1)):
    raise ValueError("regret outside [0, 1] (or NaN) in the records")
  fams = df.groupby(list(TARGET_KEY))["family"].nunique()
  if (fams > 1).any():
    raise ValueError(f"targets with several families: {list(fams[fams > 1].index)}")
  key = ["method", "regime", "K", *TARGET_KEY, "seed"]
  dup = df.duplicated(key)
  if dup.any():
    raise ValueError(f"duplicate episodes, e.g. {df.loc[dup, key].iloc[0].to_dict()}")


def by_provenance(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
  """provenance -> its records: real, semi-synthetic and synthetic are reported apart."""
  return {str(p): g.reset_index(drop=True) for p, g in df.groupby("provenance", sort=True)}


def target_scores(df: pd.DataFrame) -> pd.DataFrame:
  """One row per method, regime, K and target: `score` (mean regret over seeds), `n_seeds`."""
  return (df.groupby(["method", "regime", "K", *TARGET_KEY, "family"], sort=True)
          .agg(score=("regret", "mean"), n_seeds=("regret", "size")).reset_index())


def stratified_draws(strata_T: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
  """(n_boot, T) target indices: each replicate redraws every stratum's targets from that stratum
  with replacement, so every replicate keeps each table's target count."""
  rng = np.random.default_rng(seed)
  idx_BxT = np.empty((n_boot, len(strata_T)), np.int64)
  for s in np.unique(strata_T):
    members = np.flatnonzero(strata_T == s)
    idx_BxT[:, members] = members[rng.integers(0, len(members), (n_boot, len(members)))]
  return idx_BxT


def draw_weights(idx_BxT: np.ndarray) -> np.ndarray:
  """(B, T) how often each target is in each replicate; row of ones = the sample itself."""
  w_BxT = np.zeros(idx_BxT.shape, np.float64)
  np.add.at(w_BxT, (np.arange(len(idx_BxT))[:, None], idx_BxT), 1.0)
  return w_BxT


def family_means(values_TxM, present_TxM, family_T, n_families, w_BxT):
  """Targets -> families -> mean under target weights w: (B, F, M) family scores (NaN where a
  family has no target of the column) and (B, M) headlines (families weigh equally)."""
  t, m = values_TxM.shape
  onehot_TxF = np.eye(n_families)[family_T]
  v = np.where(present_TxM, values_TxM, 0.0)
  sum_BxFM = w_BxT @ (v[:, None, :] * onehot_TxF[:, :, None]).reshape(t, -1)
  count_BxFM = w_BxT @ (present_TxM[:, None, :] * onehot_TxF[:, :, None]).reshape(t, -1)
  fam_BxFxM = (sum_BxFM / np.where(count_BxFM > 0, count_BxFM, np.nan)).reshape(
      len(w_BxT), n_families, m)
  n_BxM = np.isfinite(fam_BxFxM).sum(axis=1)
  head_BxM = np.nansum(fam_BxFxM, axis=1) / np.where(n_BxM > 0, n_BxM, np.nan)
  return fam_BxFxM, head_BxM


def num(x):
  """A float for JSON: None for NaN / missing."""
  return None if x is None or not np.isfinite(x) else float(x)


def ci(stat_B, name: str = "ci") -> dict:
  """{name_low, name_high}: the percentile interval (CI_LEVEL) of the finite replicates."""
  x = np.asarray(stat_B, np.float64)
  x = x[np.isfinite(x)]
  if not len(x):
    return {f"{name}_low": None, f"{name}_high": None}
  q = 100 * (1 - CI_LEVEL) / 2
  lo, hi = np.percentile(x, [q, 100 - q])
  return {f"{name}_low": float(lo), f"{name}_high": float(hi)}


def win_tie_loss(d, tie_tol) -> dict:
  d = np.asarray(d, np.float64)
  return dict(win=int((d < -tie_tol).sum()), tie=int((np.abs(d) <= tie_tol).sum()),
              loss=int((d > tie_tol).sum()))


def prob_improvement(agent_seeds, peer_seeds) -> float:
  """rliable's probability of improvement on one target; regret is negated (rliable: higher
  score is better)."""
  return float(rly_metrics.probability_of_improvement(
      -np.asarray(agent_seeds, np.float64)[:, None], -np.asarray(peer_seeds, np.float64)[:, None]))


class Slice:
  """One (regime, K): the targets x methods score matrix and what the bootstrap needs."""

  def __init__(self, df_slice: pd.DataFrame):
    ts = target_scores(df_slice)
    scores = ts.set_index([*TARGET_KEY, "method"])["score"].unstack("method").sort_index()
    self.targets = list(scores.index)
    self.methods = [str(m) for m in scores.columns]
    self.scores_TxM = scores.to_numpy(np.float64)
    self.present_TxM = np.isfinite(self.scores_TxM)
    fam = ts.groupby(list(TARGET_KEY))["family"].first().reindex(scores.index)
    self.families = sorted(fam.unique())
    self.family_T = np.array([self.families.index(f) for f in fam])
    strata = [t[:2] for t in self.targets]
    self.strata_T = np.array([sorted(set(strata)).index(s) for s in strata])
    self.ranks_TxM = pd.DataFrame(self.scores_TxM).rank(axis=1, method="average").to_numpy()
    self.seeds = {k: g["regret"].to_numpy(np.float64) for k, g in
                  df_slice.groupby([*TARGET_KEY, "method"], sort=True)}

  def col(self, m):
    return self.methods.index(m)


def iqm_draws(scores_T, idx_BxT) -> np.ndarray:
  """The IQM (rliable's aggregate_iqm: 25% trimmed mean, batched) of each replicate's targets that
  the method played."""
  s_BxT = scores_T[idx_BxT]
  if np.isfinite(scores_T).all():
    return sp_stats.trim_mean(s_BxT, 0.25, axis=1)
  return np.array([sp_stats.trim_mean(r[np.isfinite(r)], 0.25) if np.isfinite(r).any() else np.nan
                   for r in s_BxT])


def method_cells(sl: Slice, idx_BxT, w_BxT) -> tuple[dict, list]:
  """(method -> cell without `peers`, family rows) for one (regime, K)."""
  nf, ones = len(sl.families), np.ones((1, len(sl.targets)))
  fam0, head0 = family_means(sl.scores_TxM, sl.present_TxM, sl.family_T, nf, ones)
  famb, headb = family_means(sl.scores_TxM, sl.present_TxM, sl.family_T, nf, w_BxT)
  rfam0, rank0 = family_means(sl.ranks_TxM, sl.present_TxM, sl.family_T, nf, ones)
  cells, rows = {}, []
  for j, m in enumerate(sl.methods):
    pres = sl.present_TxM[:, j]
    cells[m] = dict(mean=num(head0[0, j]), **ci(headb[:, j]), mean_rank=num(rank0[0, j]),
                    iqm=num(rly_metrics.aggregate_iqm(sl.scores_TxM[pres, j][None, :])),
                    **ci(iqm_draws(sl.scores_TxM[:, j], idx_BxT), "iqm_ci"),
                    n_targets=int(pres.sum()), n_families=int(np.isfinite(fam0[0, :, j]).sum()),
                    complete=bool(pres.all()))
    for f, fname in enumerate(sl.families):
      if np.isfinite(fam0[0, f, j]):
        rows.append(dict(method=m, family=fname, mean=num(fam0[0, f, j]), **ci(famb[:, f, j]),
                         mean_rank=num(rfam0[0, f, j]),
                         n_targets=int((pres & (sl.family_T == f)).sum())))
  return cells, rows


def agent_versus(sl: Slice, agent: str, w_BxT, tie_tol) -> tuple[dict, list]:
  """(peer -> paired fields, family rows) of one agent against every other method of the slice,
  each pair on the targets both played."""
  nf, ones = len(sl.families), np.ones((1, len(sl.targets)))
  ja = sl.col(agent)
  peers = [p for p in sl.methods if p != agent]
  jp = [sl.col(p) for p in peers]
  common_TxP = sl.present_TxM[:, [ja]] & sl.present_TxM[:, jp]
  # the mean of differences is the difference of means: same targets, same weights
  d_TxP = sl.scores_TxM[:, [ja]] - sl.scores_TxM[:, jp]
  poi_TxP = np.full(d_TxP.shape, np.nan)
  for t, key in enumerate(sl.targets):
    for i, p in enumerate(peers):
      if common_TxP[t, i]:
        poi_TxP[t, i] = prob_improvement(sl.seeds[(*key, agent)], sl.seeds[(*key, p)])
  dfam0, d0 = family_means(d_TxP, common_TxP, sl.family_T, nf, ones)
  dfamb, db = family_means(d_TxP, common_TxP, sl.family_T, nf, w_BxT)
  _, p0 = family_means(poi_TxP, common_TxP, sl.family_T, nf, ones)
  _, pb = family_means(poi_TxP, common_TxP, sl.family_T, nf, w_BxT)
  out, rows = {}, []
  for i, p in enumerate(peers):
    c = common_TxP[:, i]
    out[p] = dict(diff=num(d0[0, i]), **ci(db[:, i], "diff_ci"),
                  **win_tie_loss(d_TxP[c, i], tie_tol), prob_improvement=num(p0[0, i]),
                  **ci(pb[:, i], "prob_improvement_ci"), n_targets=int(c.sum()))
    for f, fname in enumerate(sl.families):
      cf = c & (sl.family_T == f)
      if cf.any():
        rows.append(dict(agent=agent, peer=p, family=fname, diff=num(dfam0[0, f, i]),
                         **ci(dfamb[:, f, i], "diff_ci"), **win_tie_loss(d_TxP[cf, i], tie_tol),
                         n_targets=int(cf.sum())))
  return out, rows


def runs_to_target(df: pd.DataFrame, target=REGRET_TARGET) -> tuple[dict, list]:
  """method -> regime -> {mean, n_reached, n_never, n_targets, max_K}, and per-family rows: the
  smallest K played whose target score is <= target (mean over the targets that get there,
  families weighing equally; n_never: targets that do not within the largest K played)."""
  ts = target_scores(df)
  first = {}
  for key, g in ts.groupby(["method", "regime", *TARGET_KEY, "family"], sort=True):
    hit = g.loc[g["score"] <= target, "K"]
    first[key] = (int(hit.min()) if len(hit) else None, int(g["K"].max()))
  out, rows = {}, []
  per = pd.DataFrame([(*k, *v) for k, v in first.items()],
                     columns=["method", "regime", *TARGET_KEY, "family", "first_K", "max_K"])
  for (m, regime), g in per.groupby(["method", "regime"], sort=True):
    reached = g.dropna(subset=["first_K"])
    fam = reached.groupby("family")["first_K"].mean()
    out.setdefault(str(m), {})[str(regime)] = dict(
        mean=num(fam.mean()) if len(fam) else None, n_reached=len(reached),
        n_never=int(g["first_K"].isna().sum()), n_targets=len(g), max_K=int(g["max_K"].max()))
    for f, gf in g.groupby("family", sort=True):
      r = gf["first_K"].dropna()
      rows.append(dict(method=str(m), regime=str(regime), family=str(f),
                       mean=num(r.mean()) if len(r) else None,
                       n_never=int(gf["first_K"].isna().sum()), n_targets=len(gf)))
  return out, rows


def friedman_rank(df: pd.DataFrame, regime: str, k: int):
  """(autorank result or None, JSON summary) of the Friedman test and Nemenyi CD at (regime, K),
  over the methods that played every target there; None with fewer than 3 such methods (below
  that Friedman does not apply) or 5 targets (autorank's minimum)."""
  sl = df[(df["regime"] == regime) & (df["K"] == k)]
  if sl.empty:
    return None, None
  scores = target_scores(sl).set_index([*TARGET_KEY, "method"])["score"].unstack("method")
  full = [str(m) for m in scores.columns if scores[m].notna().all()]
  info = dict(n_targets=len(scores), methods=full,
              left_out=[str(m) for m in scores.columns if str(m) not in full],
              p=None, cd=None, mean_rank_per_target=None, note=None)
  if len(full) < 3 or len(scores) < 5:
    info["note"] = "needs 3 methods that played every target and 5 targets"
    return None, info
  data = pd.DataFrame(scores[full].to_numpy(np.float64), columns=full)
  with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
    warnings.simplefilter("ignore")  # constant columns: shapiro / friedman warn, we report p
    res = autorank.autorank(data, alpha=ALPHA, order="ascending", force_mode="nonparametric")
  info.update(p=num(res.pvalue), cd=num(res.cd),
              mean_rank_per_target={str(m): float(r) for m, r in res.rankdf["meanrank"].items()})
  return res, info


def summarize(df: pd.DataFrame, agents, n_boot=N_BOOT, seed=BOOT_SEED, tie_tol=TIE_TOL,
              cd_budgets=CD_BUDGETS) -> dict:
  """The statistics of one provenance's records as a JSON-able dict (module docstring; keys of K
  are strings so the dict survives a JSON round trip)."""
  check_records(df)
  agents = [agents] if isinstance(agents, str) else list(agents)
  absent = [a for a in agents if a not in set(df["method"])]
  if absent:
    raise ValueError(f"agents {absent} have no records")
  regimes = [r for r in REGIMES if r in set(df["regime"])] + sorted(
      set(df["regime"]) - set(REGIMES))
  out = dict(provenance=str(df["provenance"].iloc[0]), agents=agents,
             settings=dict(n_boot=n_boot, boot_seed=seed, ci=CI_LEVEL, tie_tol=tie_tol,
                           regret_target=REGRET_TARGET, alpha=ALPHA, cd_budgets=list(cd_budgets)),
             slices={}, methods={}, families=[], family_versus=[], friedman={})
  for regime in regimes:
    for k in sorted(int(k) for k in df.loc[df["regime"] == regime, "K"].unique()):
      sl = Slice(df[(df["regime"] == regime) & (df["K"] == k)])
      idx_BxT = stratified_draws(sl.strata_T, n_boot, seed)  # the same draws for every method
      w_BxT = draw_weights(idx_BxT)
      cells, fam_rows = method_cells(sl, idx_BxT, w_BxT)
      vs_rows = []
      for a in agents:
        if a in cells:
          cells[a]["peers"], rows = agent_versus(sl, a, w_BxT, tie_tol)
          vs_rows += rows
      sizes = np.bincount(sl.strata_T)
      out["slices"].setdefault(regime, {})[str(k)] = dict(
          n_targets=len(sl.targets), n_tables=len(sizes), n_families=len(sl.families),
          n_targets_resampled=int(sizes[sizes > 1].sum()))  # tables of one target add no spread
      for m, c in cells.items():
        out["methods"].setdefault(m, {}).setdefault(regime, {})[str(k)] = c
      out["families"] += [dict(regime=regime, K=k, **r) for r in fam_rows]
      out["family_versus"] += [dict(regime=regime, K=k, **r) for r in vs_rows]
      if k in cd_budgets:
        out["friedman"].setdefault(regime, {})[str(k)] = friedman_rank(df, regime, k)[1]
  out["runs_to_target"], out["family_runs_to_target"] = runs_to_target(df)
  return out


# ---- Markdown ----

def fmt(x, signed=False) -> str:
  return "-" if x is None else (f"{x:+.4f}" if signed else f"{x:.4f}")


def standing(p: dict) -> str:
  """Where the agent stands against a peer, from the CI of agent - peer."""
  if p["diff_ci_high"] is not None and p["diff_ci_high"] < 0:
    return "below"
  if p["diff_ci_low"] is not None and p["diff_ci_low"] > 0:
    return "above"
  return "not distinguishable from"


def markdown(summary: dict, level: int = 2) -> str:
  """benchmark.md's statistics of one provenance: per regime x K a table (mean [95% CI], mean
  rank, agent - method [CI], win/tie/loss, P(agent better)), a sentence per agent on where it
  stands against each peer, the Friedman tests, runs to the regret target, and per family."""
  h = "#" * level
  s = summary["settings"]
  agents = summary["agents"]
  meth = summary["methods"]
  regimes = [r for r in REGIMES if any(r in v for v in meth.values())] + sorted(
      {r for v in meth.values() for r in v} - set(REGIMES))
  lines = [f"{h} Statistics ({summary['provenance']} targets)", "",
           "Score of a target: mean regret over its seeds; of a family: mean over its targets; "
           "`mean`: mean over families (each family weighs 1). Lower is better. "
           f"[95% CI]: bootstrap over targets stratified by table ({s['n_boot']} draws, seed "
           f"{s['boot_seed']}), paired across methods. Mean rank: 1 = best on a target, ties "
           f"averaged, weighed like the score. W/T/L: targets where the agent's score is below / "
           f"within {s['tie_tol']:g} of / above the method's. P(better): rliable's probability of "
           "improvement (a seed of the agent has lower regret than one of the method).", ""]
  for regime in regimes:
    ks = sorted({int(k) for v in meth.values() for k in v.get(regime, {})})
    lines += [f"{h}# Regime `{regime}`", ""]
    for k in ks:
      here = {m: v[regime][str(k)] for m, v in meth.items() if str(k) in v.get(regime, {})}
      info = summary["slices"][regime][str(k)]
      n_t = info["n_targets"]
      ags = [a for a in agents if a in here]
      order = sorted(here, key=lambda m: (not here[m]["complete"], here[m]["mean"]))
      head = "| method | mean [95% CI] | mean rank | targets |" + "".join(
          f" {a} - method [CI] | W/T/L | P({a} better) |" for a in ags)
      lines += [f"**K = {k}**: {n_t} targets, {info['n_families']} families, {info['n_tables']} "
                f"tables; the CIs vary the {info['n_targets_resampled']} targets of tables with "
                "more than one (a table's only target is in every draw).", "", head,
                "|---|---:|---:|---:|" + "---:|---:|---:|" * len(ags)]
      for m in order:
        c = here[m]
        row = (f"| {m} | {fmt(c['mean'])} [{fmt(c['ci_low'])}, {fmt(c['ci_high'])}] | "
               f"{c['mean_rank']:.2f} | {c['n_targets']} |")
        for a in ags:
          p = here[a]["peers"].get(m)
          row += (" - | - | - |" if p is None else
                  f" {fmt(p['diff'], True)} [{fmt(p['diff_ci_low'], True)}, "
                  f"{fmt(p['diff_ci_high'], True)}] | {p['win']}/{p['tie']}/{p['loss']} | "
                  f"{fmt(p['prob_improvement'])} |")
        lines.append(row)
      lines.append("")
      for a in ags:
        groups = {"below": [], "not distinguishable from": [], "above": []}
        for peer, p in sorted(here[a]["peers"].items(), key=lambda kv: kv[1]["diff"]):
          part = f"{peer} ({fmt(p['diff'], True)} [{fmt(p['diff_ci_low'], True)}, " \
                 f"{fmt(p['diff_ci_high'], True)}]" + (
                     f" on {p['n_targets']} targets)" if p["n_targets"] < n_t else ")")
          groups[standing(p)].append(part)
        said = "; ".join(f"{w} {', '.join(ps)}" for w, ps in groups.items() if ps)
        lines.append(f"- {a} at K = {k} (`{regime}`), mean regret {fmt(here[a]['mean'])} "
                     f"[{fmt(here[a]['ci_low'])}, {fmt(here[a]['ci_high'])}]: "
                     f"{said or 'no peer played here'} (agent - peer [95% CI]).")
      if ags:
        lines.append("")
    fr = summary["friedman"].get(regime, {})
    for k, info in sorted(fr.items(), key=lambda kv: int(kv[0])):
      if info is None:
        continue
      if info["p"] is None:
        lines.append(f"- Friedman test at K = {k}: not run ({info.get('note', '')}).")
      else:
        lines.append(f"- Friedman test at K = {k} (autorank; {info['n_targets']} targets as "
                     f"blocks, {len(info['methods'])} methods that played them all): p = "
                     f"{info['p']:.3g}; Nemenyi critical difference {info['cd']:.2f} in mean rank "
                     f"(per target)" + (f"; left out: {', '.join(info['left_out'])}"
                                        if info["left_out"] else "") + ".")
    if fr:
      lines.append("")
    rt = {m: v[regime] for m, v in summary["runs_to_target"].items() if regime in v}
    if rt:
      lines += [f"Expensive runs to reach regret <= {s['regret_target']:g} (smallest K played; "
                "mean over the targets that reach it, families weigh equally; never: targets "
                "that do not within the largest K):", "",
                "| method | mean K | never / targets | largest K |", "|---|---:|---:|---:|"]
      for m in sorted(rt, key=lambda m: (rt[m]["n_never"], rt[m]["mean"] or 0)):
        r = rt[m]
        mean = "-" if r["mean"] is None else f"{r['mean']:.2f}"
        lines.append(f"| {m} | {mean} | "
                     f"{r['n_never']} / {r['n_targets']} | {r['max_K']} |")
      lines.append("")
    fam_ks = [int(k) for k in s["cd_budgets"] if k in ks] or ks[:1]
    for k in fam_ks:
      rows = [r for r in summary["families"] if r["regime"] == regime and r["K"] == k]
      fams = sorted({r["family"] for r in rows})
      ms = sorted({r["method"] for r in rows})
      cell = {(r["method"], r["family"]): r for r in rows}
      lines += [f"Per family at K = {k} (mean [95% CI], targets):", "",
                "| method | " + " | ".join(
                    f"{f} ({max(r['n_targets'] for r in rows if r['family'] == f)})"
                    for f in fams) + " |", "|---|" + "---:|" * len(fams)]
      for m in ms:
        lines.append(f"| {m} | " + " | ".join(
            f"{fmt(cell[(m, f)]['mean'])} [{fmt(cell[(m, f)]['ci_low'])}, "
            f"{fmt(cell[(m, f)]['ci_high'])}]" if (m, f) in cell else "-" for f in fams) + " |")
      lines.append("")
  return "\n".join(lines)
