"""Transcripts: any episode as Markdown a researcher reads in a minute.

A transcript shows the task, the results known before the first query, every query with its
predicted and observed outcome, the evidence behind each query (choosers.py), and the
recommendation with its regret and percentile. Episodes are replayed one decision at a time on
`ReferenceEnv` (the env's plain twin), so every view the method saw can be shown; a greedy agent
replayed here matches its jitted evaluation episode up to floating-point ties.

Scores are the env's normalized outcomes (higher is better; 0 = the median of the nearest cheaper
fidelity, +-1 about one interquartile range; symlog-compressed, see env.normalize).
"""
from __future__ import annotations

import json
import os
import re

import numpy as np

from autollmr.agent import checkpoints
from autollmr.evaluation import agents
from autollmr.evaluation import choosers
from autollmr.evaluation import runs
from autollmr.evaluation.choosers import AgentChooser
from autollmr.evaluation.choosers import PeerChooser
from autollmr.gym import table as table_lib
from autollmr.gym.reference import ReferenceEnv
from autollmr.peers import base as peer_base
from autollmr.peers import registry


def fmt_config(table, c: int, max_shown: int = 5) -> str:
  """`name=value` of a config's features; with many features, the largest in magnitude."""
  x = table.config_features_CxD[c]
  names = table.config_feature_names
  idx = list(range(len(x)))
  if len(x) > max_shown:
    idx = sorted(np.argsort(-np.abs(x), kind="stable")[:max_shown].tolist())
  s = ", ".join(f"{names[i]}={x[i]:.4g}" for i in idx)
  return s + (f" (+{len(x) - max_shown} more)" if len(x) > max_shown else "")


def record_episode(table, task, params, sizes, task_index: int, seed: int, method: str,
                   chooser_factory) -> dict:
  """Plays one episode on ReferenceEnv and records everything a transcript shows.

  chooser_factory(ctx) -> a chooser (AgentChooser / PeerChooser): act, tell, evidence."""
  ref = ReferenceEnv(params, sizes, auto_reset=False)
  p, i = ref.p, int(task_index)
  ctx = peer_base.make_context(table, task, params, i)
  ref.reset(i, seed)
  chooser = chooser_factory(ctx)
  exists = ctx.cand_exists_A
  cfg, fid = ctx.cand_config_A, ctx.cand_fid_A
  view0 = ref.expand()
  raw = lambda a: float(p.values_FxC[fid[a], cfg[a]])
  known0 = np.flatnonzero(view0["known_A"])
  prior = []
  for f in sorted(set(fid[known0].tolist()), key=lambda f: float(p.cost_F[f])):
    rows = known0[fid[known0] == f]
    best = rows[np.argmax(view0["value_A"][rows])]
    prior.append(dict(fidelity=table.fidelity_names[f], n=len(rows),
                      cost=float(view0["cost_A"][rows[0]]), best_config=int(cfg[best]),
                      best_value=raw(best)))
  steps = []
  while True:
    view = ref.expand()
    a = chooser.act(view)
    ok = 0 <= a < len(exists) and exists[a]
    mu, sd = choosers.kernel_predict(view, exists, [a]) if ok else (np.array([np.nan]),) * 2
    ev = chooser.evidence(view, a) if ok else []
    was_known = bool(ok and view["known_A"][a])
    _, _, terminated, truncated, info = ref.step(a)
    value = None if info["invalid"] else float(ref.norm(a, info["value"]))
    chooser.tell(a, value)
    steps.append(dict(
        action=int(a), fidelity=table.fidelity_names[fid[a]] if ok else None,
        config=int(cfg[a]) if ok else None, cost=float(view["cost_A"][a]) if ok else None,
        is_target=bool(info["is_target"]), invalid=bool(info["invalid"]),
        repeat=bool(info["repeat"]) or was_known, prob=chooser.prob,
        pred_score=float(mu[0]), pred_spread=float(sd[0]), obs_score=value,
        obs_value=None if info["invalid"] else float(info["value"]),
        regret=float(info["regret"]),
        evidence=[dict(fidelity=table.fidelity_names[fid[k]], config=int(cfg[k]),
                       value=float(p.values_FxC[fid[k], cfg[k]]),
                       score=float(view["value_A"][k]), weight=w) for k, w in ev]))
    if terminated or truncated:
      break
  t = int(p.target_N[i])
  rec = int(info["recommendation"])
  n_tgt = int(table.valid_FxC[t].sum())
  return dict(method=method, table=table.name, objective=table.objective,
              direction=table.direction, target=task.target, budget=int(task.budget),
              rho=float(task.rho), seed=int(seed), chooser=chooser.kind,
              evidence_label=chooser.evidence_label, evidence_col=chooser.evidence_col,
              prior=prior, steps=steps,
              n_target_configs=n_tgt, n_candidates_target=int((exists & (fid == t)).sum()),
              recommendation=rec, rec_value=float(p.values_FxC[t, rec]) if rec >= 0 else None,
              best_value=float(p.y_star_N[i]), worst_value=float(p.y_worst_N[i]),
              regret=float(info["regret"]), percentile=float(info["percentile"]),
              cost_spent=float(info["cost_spent"]))


def _num(x, nd=4):
  return "-" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{x:.{nd}g}"


def render(ep: dict, table) -> str:
  """The Markdown transcript of a recorded episode."""
  obj, better = ep["objective"], ("lower" if ep["direction"] == "min" else "higher")
  L = [f"# {ep['method']} on {ep['table']}: target {ep['target']}, budget K={ep['budget']}",
       "",
       f"**Task.** Find the config with the best {obj} ({better} is better) at **{ep['target']}**"
       f" with a budget of {ep['budget']} run{'s' if ep['budget'] != 1 else ''} there (a "
       "cheaper run costs its share of one). "
       f"{ep['n_candidates_target']} target configs are candidates; reveal fraction rho = "
       f"{ep['rho']:g}, seed {ep['seed']}.", ""]
  rec = ep["recommendation"]
  if rec >= 0:
    L += [f"**Result.** Recommends {fmt_config(table, rec)} with {obj} "
          f"{_num(ep['rec_value'])}: **regret {ep['regret']:.4f}** (0 = the best target config, "
          f"{_num(ep['best_value'])}; 1 = the worst, {_num(ep['worst_value'])}); "
          f"{100 * ep['percentile']:.1f}% of the {ep['n_target_configs']} target configs are "
          f"better. Spent {ep['cost_spent']:.3g} of {ep['budget']}.", ""]
  else:
    L += ["**Result.** No target run was made: regret 1.", ""]
  if ep["prior"]:
    L += ["## Known before the first query", "",
          f"| fidelity | known results | cost (target runs) | best {obj} | its config |",
          "|---|---:|---:|---:|---|"]
    L += [f"| {r['fidelity']} | {r['n']} | {r['cost']:.3g} | {_num(r['best_value'])} | "
          f"{fmt_config(table, r['best_config'])} |" for r in ep["prior"]]
    L.append("")
  L += ["## Queries", "",
        "Predicted score: kernel regression over the results known at that moment (not the "
        "policy's), +- the spread of that evidence. Scores: higher is better, 0 = the median of "
        "the nearest cheaper fidelity, +-1 about one IQR.", "",
        f"| # | fidelity | config | p(query) | predicted score | observed score | {obj} | "
        "regret so far |", "|---:|---|---|---:|---:|---:|---:|---:|"]
  for n, s in enumerate(ep["steps"], 1):
    what = ("invalid" if s["invalid"] else fmt_config(table, s["config"])
            + (" (repeat)" if s["repeat"] else "") + ("" if s["is_target"] else " (cheap)"))
    pred = (f"{s['pred_score']:+.2f} +- {s['pred_spread']:.2f}"
            if np.isfinite(s["pred_score"]) else "-")
    obs = "-" if s["obs_score"] is None else f"{s['obs_score']:+.2f}"
    L.append(f"| {n} | {s['fidelity'] or '-'} | {what} | {_num(s['prob'], 2)} | {pred} | {obs} |"
             f" {_num(s['obs_value'])} | {s['regret']:.4f} |")
  L += ["", f"## Evidence per query ({ep['evidence_label']})", "",
        f"| # | known result at | config | {obj} | score | {ep['evidence_col']} |",
        "|---:|---|---|---:|---:|---:|"]
  for n, s in enumerate(ep["steps"], 1):
    for e in s["evidence"]:
      L.append(f"| {n} | {e['fidelity']} | {fmt_config(table, e['config'])} | "
               f"{_num(e['value'])} | {e['score']:+.2f} | {e['weight']:+.3g} |")
  return "\n".join(L) + "\n"


def queries_record(ep: dict, table) -> dict:
  """What plots.landscape overlays: the episode's queried (fidelity, config) pairs in order."""
  return dict(method=ep["method"], table=ep["table"], target=ep["target"], budget=ep["budget"],
              seed=ep["seed"], regret=ep["regret"], recommendation=ep["recommendation"],
              queries=[dict(fidelity=s["fidelity"], config=s["config"],
                            features=[float(x) for x in table.config_features_CxD[s["config"]]],
                            value=s["obs_value"], is_target=s["is_target"])
                       for s in ep["steps"] if s["config"] is not None])


def safe_name(s: str) -> str:
  return re.sub(r"[^A-Za-z0-9._-]+", "_", str(s)).strip("_")


def eval_choosers(config, workdir, methods) -> list:
  """[(method, factory(ctx, table, task, seed) -> chooser)]: the workdir's final agent (RL if
  trained, else SFT); without one, a classical peer (topk_transfer if evaluated), so a peers-only
  eval still has transcripts."""
  for method, load in ((agents.RL_METHOD, checkpoints.load_rl_policy),
                       (agents.METHOD, checkpoints.load_sft_policy)):
    model = load(config, workdir)
    if model is not None:
      return [(method, agent_factory(model))]
  classical = [m for m in methods if m in registry.PEERS and m not in ("meta_regressor", "fsbo")]
  pick = "topk_transfer" if "topk_transfer" in classical else (classical or [None])[0]
  if pick is None:
    return []
  return [(pick, lambda ctx, table, task, seed, m=pick: PeerChooser(
      registry.PEERS[m](ctx, seed), ctx.cand_exists_A))]


def agent_factory(model):
  return lambda ctx, table, task, seed: AgentChooser(model, ctx.cand_exists_A,
                                                     table_lib.family_id(table.family),
                                                     task.max_turns)


def pick_tasks(test, n: int) -> list[int]:
  """n test tasks of a family: every target at the largest budget, then the next budget, ..."""
  order = sorted(range(len(test)), key=lambda i: (-test[i].budget, i))
  return order[:max(n, 0)]


def write_eval_transcripts(config, tables, splits, out_dir, choosers) -> list[dict]:
  """config.eval.transcripts episodes per family of each of `choosers` (eval_choosers), as *.md
  in DIR/transcripts/, plus DIR/transcripts/queries.jsonl (what plots.landscape overlays).
  Returns the query records."""
  n = int(config.eval.transcripts)
  if n <= 0:
    return []
  tdir = os.path.join(out_dir, "transcripts")
  os.makedirs(tdir, exist_ok=True)
  queries = []
  for name in sorted(splits):
    test = splits[name]["test"]
    picks = pick_tasks(test, n)
    if not picks:
      continue
    table = tables[name]
    params, sizes = runs.build_eval_params(table, test, config)
    for method, factory in choosers:
      for j, i in enumerate(picks):
        seed = j  # a different reveal seed per transcript (matters only at rho < 1)
        ep = record_episode(table, test[i], params, sizes, i, seed, method,
                            lambda ctx: factory(ctx, table, test[i], seed))
        fname = safe_name(f"{name}__{method}__{test[i].target}__K{test[i].budget:g}__seed{seed}")
        with open(os.path.join(tdir, fname + ".md"), "w") as f:
          f.write(render(ep, table))
        queries.append(queries_record(ep, table))
  with open(os.path.join(tdir, "queries.jsonl"), "w") as f:
    for q in queries:
      f.write(json.dumps(q) + "\n")
  return queries
