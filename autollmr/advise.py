"""The advisor: the next runs to launch at an expensive fidelity, from a lab's own cheap runs.

  python -m autollmr.advise --spec my_runs.json --target 1B --k 3 --agent workdir [--json]
  python -m autollmr.advise --spec my_runs.json --target 1B --k 3 --method topk_transfer
  python -m autollmr.advise --export synthetic_steplaw_dense --withhold 'N=1.07B,D=20B' --out DIR

Reads the runs through a table spec (data_tables/README.md). The target fidelity may have no rows:
its candidate configs are then the spec's planned runs (spec key `candidates`: a CSV of runs you
could launch, objective empty), which also give the target's fidelity features and cost; without
planned rows at the target, the candidates are the configs seen at any other fidelity. Known:
every result at a fidelity cheaper than the target (capped as the env caps cheap rows) and every
target run already in the CSV.

How k suggestions come out of a sequential method: the method (the trained policy, or a peer with
--method) picks one target config; the advisor pretends it came out as the kernel regression
predicts (a "kriging believer") and asks again, so suggestion 2 is what the method would do next if
1 went as expected. Stateless over the CSV: after running a suggestion, add its row and ask again;
the search continues from everything in the CSV (tests/test_advise.py checks it).

Each suggestion carries: the config (in the CSV's columns, transforms inverted), a predicted score
and objective value (kernel regression over the known results; `transcripts.kernel_predict`), the
spread of that evidence as its uncertainty, its predicted rank among the candidates, the policy's
probability, and the evidence (the known results with the largest saliency for the policy, or the
largest kernel weight for a peer). --reveal PATH (for tests and demos) reads withheld target rows
and reports each suggestion's true value and regret. A spec the agent cannot represent (too many
config or fidelity features, no fidelity features, nothing cheaper than the target) is refused with
a message naming what is missing.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from autollmr import env as env_lib
from autollmr import model as model_lib
from autollmr import spec as spec_lib
from autollmr import transcripts as tr
from autollmr.env_reference import ReferenceEnv
from autollmr.table import Table
from autollmr.tasks import Task

INVERSE = {"none": lambda x: x, "log2": lambda x: 2.0 ** x, "log10": lambda x: 10.0 ** x,
           "ln": np.exp}
EXTRA_TURNS = 2  # as tasks.curate at rho = 1: the policy's turn fraction means the same


class Refusal(Exception):
  """The advisor cannot answer this question; the message says what is missing."""


# --- reading the runs -----------------------------------------------------------------------------

def compile_rows(spec: dict, base_dir: str, csvs, planned: bool = False) -> Table:
  """A Table from some CSVs read with the spec's rules. planned: rows without an objective (runs
  one could launch) get a placeholder, so they still declare configs, fidelities and costs."""
  from autollmr import sources
  s = {k: v for k, v in spec.items() if k != "candidates"}
  s["csv"] = csvs
  df, _ = spec_lib.read_csvs(s, base_dir)
  if s.get("loader"):
    df = sources.LOADERS[s["loader"]](df, base_dir)
  if planned:
    col = s["objective"]["column"]
    df[col] = 0.0  # a placeholder, never read as a result
    s.pop("validity", None)
    s["duplicates"] = "first"
  return spec_lib.compile_table(s, df)


def merge(runs: Table, planned: Table | None) -> tuple[Table, np.ndarray]:
  """The runs' table extended by the planned rows' fidelities and configs (matched by config
  label); returns it and planned_FxC (where a planned run sits)."""
  if planned is None:
    return runs, np.zeros(runs.values_FxC.shape, bool)
  fids = list(runs.fidelity_names) + [f for f in planned.fidelity_names
                                      if f not in runs.fidelity_names]
  labels = list(runs.config_labels) + [c for c in planned.config_labels
                                       if c not in set(runs.config_labels)]
  src = lambda f: (runs, runs.fidelity_index(f)) if f in runs.fidelity_names else (
      planned, planned.fidelity_index(f))
  cost = np.array([src(f)[0].cost_F[src(f)[1]] for f in fids], np.float64)
  order = sorted(range(len(fids)), key=lambda i: (cost[i], fids[i]))
  fids = [fids[i] for i in order]
  F, C = len(fids), len(labels)
  col = {c: i for i, c in enumerate(labels)}
  feats = np.zeros((C, runs.config_features_CxD.shape[1]), np.float32)
  for t in (planned, runs):  # runs last: their features win where both have the config
    feats[[col[c] for c in t.config_labels]] = t.config_features_CxD
  values = np.full((F, C), np.nan, np.float32)
  valid = np.zeros((F, C), bool)
  flagged = np.zeros((F, C), bool)
  plan = np.zeros((F, C), bool)
  cidx = [col[c] for c in runs.config_labels]
  pidx = [col[c] for c in planned.config_labels]
  for f, name in enumerate(fids):
    if name in runs.fidelity_names:
      g = runs.fidelity_index(name)
      values[f, cidx], valid[f, cidx] = runs.values_FxC[g], runs.valid_FxC[g]
      flagged[f, cidx] = runs.flagged_FxC[g]
    if name in planned.fidelity_names:
      plan[f, pidx] = planned.valid_FxC[planned.fidelity_index(name)]
  return runs.with_changes(
      fidelity_names=tuple(fids), config_labels=tuple(labels), config_features_CxD=feats,
      fidelity_features_FxG=np.stack([src(f)[0].fidelity_features_FxG[src(f)[1]] for f in fids]),
      cost_F=np.array([src(f)[0].cost_F[src(f)[1]] for f in fids]), values_FxC=values,
      valid_FxC=valid, flagged_FxC=flagged, aux_FxC={}), plan


def load(spec_path: str) -> tuple[dict, Table, np.ndarray]:
  """(spec, table of runs + planned runs, planned_FxC)."""
  spec = spec_lib.load_spec(spec_path)
  base = os.path.dirname(os.path.abspath(spec_path))
  runs = compile_rows(spec, base, spec.get("csv"))
  planned = compile_rows(spec, base, spec["candidates"], planned=True) if spec.get(
      "candidates") else None
  if planned is not None and planned.config_feature_names != runs.config_feature_names:
    raise spec_lib.SpecError(f"{spec_path}: planned runs and runs disagree on config features")
  table, plan = merge(runs, planned)
  return spec, table, plan


# --- the agent or a peer --------------------------------------------------------------------------

def load_agent(agent_dir: str, policy: str = "auto"):
  """(model, config, which) from a workdir of `python -m autollmr.main` (its config.json and
  its RL or SFT checkpoint; auto: RL when there is one, the final stage)."""
  import ml_collections
  path = os.path.join(agent_dir, "config.json")
  if not os.path.exists(path):
    raise Refusal(f"--agent {agent_dir}: no config.json there (not a workdir of "
                  "`python -m autollmr.main`)")
  with open(path) as f:
    config = ml_collections.ConfigDict(json.load(f))
  from autollmr import rl
  from autollmr import sft
  order = {"auto": ("rl", "sft"), "rl": ("rl",), "sft": ("sft",)}[policy]
  for which in order:
    model = (rl.load_policy if which == "rl" else sft.load_policy)(config, agent_dir)
    if model is not None:
      return model, config, which
  raise Refusal(f"--agent {agent_dir}: no {' or '.join(order)} checkpoint under it "
                f"({agent_dir}/sft/ckpt, {agent_dir}/rl/ckpt)")


def check_agent_can_read(table: Table, t: int, visible: list[int], config) -> None:
  """Refuses, naming what is missing, a table the policy cannot represent."""
  D, G = len(table.config_feature_names), len(table.fidelity_feature_names)
  dmax, gmax = int(config.model.max_config_features), int(config.model.max_fidelity_features)
  if D > dmax:
    raise Refusal(f"the spec declares {D} config features ({', '.join(table.config_feature_names)})"
                  f"; the agent takes at most {dmax} (model.max_config_features): drop or merge "
                  f"features, or train an agent with --config.model.max_config_features={D}")
  if G == 0:
    raise Refusal("the spec declares no fidelity features (spec key 'fidelity.features'); the "
                  "agent relates cheap runs to the target through them: add e.g. log10 of the "
                  "model size and of the tokens")
  if G > gmax:
    raise Refusal(f"the spec declares {G} fidelity features "
                  f"({', '.join(table.fidelity_feature_names)}); the agent takes at most {gmax} "
                  "(model.max_fidelity_features)")
  g = table.fidelity_features_FxG
  if all(np.allclose(g[f], g[t]) for f in visible):
    raise Refusal(f"the target {table.fidelity_names[t]!r} has the same fidelity features "
                  f"({dict(zip(table.fidelity_feature_names, g[t].tolist()))}) as every cheaper "
                  "fidelity: the agent cannot tell them apart; add a feature that differs "
                  "(e.g. log10 of the model size)")


def _chooser(method, agent, ctx, table, task, seed):
  if agent is not None:
    model, _, _ = agent
    return tr.AgentChooser(model, ctx.cand_exists_A, model_lib.family_id(table.family),
                           task.max_turns)
  from autollmr import peers as peers_lib
  return tr.PeerChooser(peers_lib.PEERS[method](ctx, seed), ctx.cand_exists_A)


# --- the question ---------------------------------------------------------------------------------

def advise(spec_path: str, target: str, k: int = 3, agent_dir: str | None = None,
           method: str | None = None, policy: str = "auto", reveal: str | None = None,
           seed: int = 0) -> dict:
  """The advice as a JSON-able dict (see `format_text`). Raises Refusal / SpecError."""
  from autollmr import peers as peers_lib
  if (agent_dir is None) == (method is None):
    raise Refusal("give exactly one of --agent DIR (a trained workdir) or --method NAME "
                  f"(a peer: {', '.join(sorted(peers_lib.PEERS))})")
  if k < 1:
    raise Refusal(f"--k must be >= 1, got {k}")
  spec, table, plan = load(spec_path)
  if target not in table.fidelity_names:
    raise Refusal(f"fidelity {target!r} has neither runs nor planned runs in {spec_path}; "
                  f"fidelities: {list(table.fidelity_names)}. For a target without runs, list the "
                  "runs you could launch there in a CSV named by spec key 'candidates' (same "
                  "columns, objective empty)")
  if not table.config_feature_names:
    raise Refusal("the spec declares no config features (spec key 'config'): nothing to choose")
  t = table.fidelity_index(target)
  done_C = table.valid_FxC[t].copy()
  from_plan = bool(plan[t].any())
  open_C = (plan[t] if from_plan else table.valid_FxC.any(0)) & ~done_C
  if not open_C.any():
    raise Refusal(f"no config left to suggest at {target!r}: all {int(done_C.sum())} candidates "
                  "have runs; list more in the spec's 'candidates' CSV")
  cost = table.cost_F
  visible = [f for f in range(table.num_fidelities)
             if cost[f] < cost[t] and table.valid_FxC[f].any()]
  if not visible:
    raise Refusal(f"no fidelity with results costs less than {target!r} (costs: "
                  f"{dict(zip(table.fidelity_names, np.round(cost, 6).tolist()))}); the advisor "
                  "transfers from cheaper runs (spec key 'cost' sets what a run costs)")
  ignored = int(sum(table.valid_FxC[f].sum() for f in range(table.num_fidelities)
                    if f != t and f not in visible))

  agent, config = None, None
  if agent_dir is not None:
    agent = load_agent(agent_dir, policy)
    config = agent[1]
    check_agent_can_read(table, t, visible, config)
    label = f"agent {agent_dir} ({agent[2]} policy)"
  else:
    from configs import common
    config = common.base()
    if method not in peers_lib.PEERS:
      raise Refusal(f"--method {method!r} is not a peer; peers: {sorted(peers_lib.PEERS)}")
    if not peers_lib.applicable(method, table):
      raise Refusal(f"--method {method} does not apply to this spec: it needs config features "
                    "(log2_lr, log2_bs_tokens) and fidelity features log10_N, log10_D; this spec "
                    f"has {table.config_feature_names} / {table.fidelity_feature_names}")
    label = f"peer {method}"
  n_done = int(done_C.sum())
  cap = int(config.env.max_cheap_rows)
  if agent is not None:  # the policy attends to at most max_keys known results
    cap = min(cap, int(config.model.max_keys) - n_done - k)
    if cap < 1:
      raise Refusal(f"{n_done} target runs + k = {k} fill the agent's {config.model.max_keys} "
                    "attended results (model.max_keys): ask for a smaller k")

  # The env of this one question: the target's candidates are its runs (their results) and the
  # open configs (a placeholder value that nothing reads: they are never revealed or stepped).
  values_t = np.where(open_C, 0.0, table.values_FxC[t])
  env_table = table.with_changes(
      values_FxC=np.concatenate([table.values_FxC[:t], values_t[None], table.values_FxC[t + 1:]]
                                ).astype(np.float32),
      valid_FxC=np.concatenate([table.valid_FxC[:t], (done_C | open_C)[None],
                                table.valid_FxC[t + 1:]]))
  task = Task(table.name, target, tuple(table.fidelity_names[f] for f in visible), rho=1.0,
              budget=float(k), max_turns=n_done + k + EXTRA_TURNS, split="advise")
  params, sizes = env_lib.make_params(env_table, [task], max_cheap_rows=cap,
                                      max_target_configs=int((done_C | open_C).sum()))
  from autollmr import learned_peers
  learned_peers.set_training_sources(None)
  ctx = peers_lib.make_context(table, task, params, 0)  # the real table: no placeholder in it
  ref = ReferenceEnv(params, sizes, auto_reset=False)
  ref.reset(0, seed)
  p = ref.p
  cfg, fid, exists = ctx.cand_config_A, ctx.cand_fid_A, ctx.cand_exists_A
  is_t = exists & (fid == t)
  sign = table.sign()
  for slot, a in enumerate(np.flatnonzero(is_t & done_C[cfg])):  # the target runs so far
    y = np.float32(table.values_FxC[t, cfg[a]])
    ref.queried[slot], ref.values[slot] = int(a), y
    if sign * y < ref.best:
      ref.best, ref.best_config = np.float32(sign * y), int(cfg[a])
  ref.turn = n_done
  chooser = _chooser(method, agent, ctx, table, task, seed)
  near = max(visible, key=lambda f: cost[f])  # the target is scored on this one's scale

  suggestions = []
  for i in range(k):
    view = ref.expand()
    a = int(chooser.act(view))
    open_A = is_t & ~np.asarray(view["known_A"])
    if not (0 <= a < len(exists) and open_A[a]):  # a peer chose a cheap row or a repeat
      mu_all, _ = tr.kernel_predict(view, exists, np.flatnonzero(open_A))
      a = int(np.flatnonzero(open_A)[np.nanargmax(mu_all)])
    mu, sd = (float(x[0]) for x in tr.kernel_predict(view, exists, [a]))
    others, _ = tr.kernel_predict(view, exists, np.flatnonzero(open_A))
    lo, hi = tr.to_raw(p, 0, t, mu - sd), tr.to_raw(p, 0, t, mu + sd)
    ev = chooser.evidence(view, a)
    suggestions.append(dict(
        rank=i + 1, config=_columns(spec, table, int(cfg[a])),
        features={n: float(x) for n, x in zip(table.config_feature_names,
                                                table.config_features_CxD[cfg[a]])},
        label=table.config_labels[cfg[a]] if table.config_labels else str(int(cfg[a])),
        predicted=dict(score=mu, spread=sd, value=float(tr.to_raw(p, 0, t, mu)),
                       value_spread=float(abs(hi - lo) / 2), on_scale_of=table.fidelity_names[near],
                       better_than_pct=float(100 * np.mean(others < mu))),
        policy_prob=chooser.prob,
        evidence=[dict(fidelity=table.fidelity_names[fid[e]], config=_columns(spec, table,
                                                                               int(cfg[e])),
                       value=float(p.values_FxC[fid[e], cfg[e]]) if not (
                           fid[e] == t and not done_C[cfg[e]]) else None,
                       score=float(view["value_A"][e]), weight=w) for e, w in ev]))
    # Kriging believer: the suggestion is taken to come out as predicted, then ask again.
    slot = ref.turn
    ref.queried[slot], ref.values[slot] = a, np.float32(tr.to_raw(p, 0, t, mu))
    ref.turn += 1
    ref.budget_left = np.float32(ref.budget_left - 1.0)
    chooser.tell(a, mu)

  best = None
  if done_C.any():
    c = int(np.flatnonzero(done_C)[np.argmin(sign * table.values_FxC[t, done_C])])
    best = dict(config=_columns(spec, table, c), value=float(table.values_FxC[t, c]),
                label=table.config_labels[c] if table.config_labels else str(c))
  out = dict(
      table=table.name, objective=table.objective, direction=table.direction, target=target,
      method=label, k=k, candidates=int(open_C.sum()),
      candidates_from="planned runs (spec key 'candidates')" if from_plan else
      "configs seen at other fidelities",
      known=dict(cheap_results=int((exists & ~is_t).sum()),
                 cheap_fidelities=[table.fidelity_names[f] for f in visible],
                 cheap_results_available=int(sum(table.valid_FxC[f].sum() for f in visible)),
                 target_runs=n_done, ignored_costlier_or_equal=ignored),
      best_so_far=best, suggestions=suggestions, evidence_kind=chooser.evidence_col,
      notes=["Suggestions 2..k assume the earlier ones come out as predicted (kriging believer):"
             " run them, add their rows to the CSV and ask again.",
             "Predicted: kernel regression over the known results (not the policy's), on the "
             f"scale of {table.fidelity_names[near]}; score: higher is better, 0 = that "
             "fidelity's median, +-1 about one IQR. A level shift to the target is only seen "
             "through target runs already in the CSV."])
  if reveal:
    add_truth(out, spec, table, t, reveal, spec_path)
  return out


def _columns(spec: dict, table: Table, c: int) -> dict:
  """A config in the CSV's own columns: each feature's transform and scale inverted."""
  out = {}
  for j, cs in enumerate(spec["config"]):
    x = float(table.config_features_CxD[c, j])
    v = INVERSE.get(cs.get("transform", "none"), lambda x: x)(x) / float(cs.get("scale", 1.0))
    out[cs["column"]] = float(f"{v:.6g}")
  return out


def add_truth(out: dict, spec: dict, table: Table, t: int, reveal: str, spec_path: str) -> None:
  """Adds each suggestion's true value, regret and percentile from withheld target rows (a CSV
  with the runs' columns), over the target configs of the reveal file and the CSV together."""
  base = os.path.dirname(os.path.abspath(spec_path))
  rv = compile_rows(spec, base, os.path.abspath(reveal))
  target = table.fidelity_names[t]
  truth = {}
  if target in rv.fidelity_names:
    g = rv.fidelity_index(target)
    truth.update({rv.config_labels[c]: float(rv.values_FxC[g, c])
                  for c in np.flatnonzero(rv.valid_FxC[g])})
  truth.update({table.config_labels[c]: float(table.values_FxC[t, c])
                for c in np.flatnonzero(table.valid_FxC[t])})
  if not truth:
    raise Refusal(f"--reveal {reveal}: no rows at {target!r}")
  s = table.sign()
  v = np.array(list(truth.values())) * s
  star, worst = v.min(), v.max()

  def judge(label):
    if label not in truth:
      return None
    y = truth[label] * s
    return dict(value=truth[label], regret=float(np.clip((y - star) / max(worst - star, 1e-12),
                                                         0, 1)),
                better_pct=float(100 * np.mean(v < y)))
  for sug in out["suggestions"]:
    sug["revealed"] = judge(sug["label"])
  if out["best_so_far"]:
    out["best_so_far"]["revealed"] = judge(out["best_so_far"]["label"])
  out["revealed_best"] = float(star * s)
  out["revealed_n"] = len(truth)


# --- output ---------------------------------------------------------------------------------------

def _cfg(d: dict) -> str:
  return ", ".join(f"{k}={v:.4g}" for k, v in d.items())


def format_text(out: dict) -> str:
  obj, kn = out["objective"], out["known"]
  L = [f"autollmr advisor: {out['table']}, target {out['target']} ({out['direction']} {obj}); "
       f"method: {out['method']}",
       f"Known: {kn['cheap_results']} cheap results (of {kn['cheap_results_available']}) at "
       f"{len(kn['cheap_fidelities'])} fidelities ({', '.join(kn['cheap_fidelities'])}); "
       f"{kn['target_runs']} runs at {out['target']} so far; {out['candidates']} candidate "
       f"configs ({out['candidates_from']})."]
  if kn["ignored_costlier_or_equal"]:
    L.append(f"Ignored: {kn['ignored_costlier_or_equal']} results at fidelities that cost as "
             "much as the target or more.")
  if out["best_so_far"]:
    b = out["best_so_far"]
    L.append(f"Best so far at the target: {_cfg(b['config'])} -> {obj} {b['value']:.4g}"
             + _truth_txt(b.get("revealed")))
  L += ["", f"Next {out['k']} run(s) at {out['target']}:"]
  for s in out["suggestions"]:
    pr = s["predicted"]
    L.append(f"{s['rank']:>2}. {_cfg(s['config'])}")
    L.append(f"    predicted {obj} {pr['value']:.4g} +- {pr['value_spread']:.2g} on "
             f"{pr['on_scale_of']}'s scale (score {pr['score']:+.2f} +- {pr['spread']:.2f}; better "
             f"than {pr['better_than_pct']:.0f}% of the open candidates)"
             + (f"; policy p = {s['policy_prob']:.2f}" if s["policy_prob"] is not None else ""))
    for e in s["evidence"]:
      val = "predicted" if e["value"] is None else f"{obj} {e['value']:.4g}"
      L.append(f"    evidence: {e['fidelity']}: {_cfg(e['config'])} -> {val} "
               f"({out['evidence_kind']} {e['weight']:+.3g})")
    if "revealed" in s:
      L.append("    " + (_truth_txt(s["revealed"]).strip() or "[revealed: not in the reveal file]"))
  L += [""] + out["notes"]
  return "\n".join(L)


def _truth_txt(r) -> str:
  if not r:
    return ""
  return (f" [revealed: {r['value']:.4g}, regret {r['regret']:.4f}, {r['better_pct']:.1f}% of "
          "target configs better]")


# --- a demo sweep from a built-in table -----------------------------------------------------------

def export_table(table: Table, out_dir: str, withhold: str | None = None) -> dict:
  """Writes `table` as a CSV of runs + a spec the advisor reads (runs.csv, spec.json); with
  `withhold`, that fidelity's rows go to withheld.csv (for --reveal) and, objective removed, to
  planned.csv (the spec's 'candidates'). Returns the paths."""
  import pandas as pd
  os.makedirs(out_dir, exist_ok=True)
  rows = []
  for f, c in zip(*np.nonzero(table.valid_FxC)):
    r = {n: float(x) for n, x in zip(table.config_feature_names, table.config_features_CxD[c])}
    r["fidelity"] = table.fidelity_names[f]
    r.update({g: float(x) for g, x in zip(table.fidelity_feature_names,
                                         table.fidelity_features_FxG[f])})
    r[table.objective] = float(table.values_FxC[f, c])
    r["cost"] = float(table.cost_F[f])
    rows.append(r)
  df = pd.DataFrame(rows)
  spec = {"name": table.name, "family": table.family, "csv": "runs.csv",
          "config": [{"column": n} for n in table.config_feature_names],
          "fidelity": {"columns": ["fidelity"],
                       "features": [{"column": g} for g in table.fidelity_feature_names]},
          "objective": {"column": table.objective, "direction": table.direction},
          "cost": {"column": "cost", "unit": table.cost_unit},
          "notes": f"exported from table {table.name} ({table.provenance})"}
  paths = dict(spec=os.path.join(out_dir, "spec.json"), runs=os.path.join(out_dir, "runs.csv"))
  if withhold is not None:
    table.fidelity_index(withhold)  # a clear KeyError for a wrong name
    held = df["fidelity"] == withhold
    paths["withheld"] = os.path.join(out_dir, "withheld.csv")
    paths["planned"] = os.path.join(out_dir, "planned.csv")
    df[held].to_csv(paths["withheld"], index=False)
    df[held].drop(columns=[table.objective]).to_csv(paths["planned"], index=False)
    df = df[~held]
    spec["candidates"] = "planned.csv"
  df.to_csv(paths["runs"], index=False)
  with open(paths["spec"], "w") as f:
    json.dump(spec, f, indent=1)
  return paths


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(prog="python -m autollmr.advise", description=__doc__.split(
      "\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--spec", help="JSON table spec of your runs (data_tables/README.md)")
  ap.add_argument("--target", help="the fidelity to suggest runs at (its name, as `python -m "
                  "autollmr.gym describe --spec` prints it)")
  ap.add_argument("--k", type=int, default=3, help="how many runs to suggest")
  ap.add_argument("--agent", help="a workdir of `python -m autollmr.main` with a trained policy")
  ap.add_argument("--policy", default="auto", choices=("auto", "rl", "sft"),
                  help="which checkpoint of --agent (auto: RL if present, else SFT)")
  ap.add_argument("--method", help="a peer instead of the agent (e.g. topk_transfer, trend)")
  ap.add_argument("--json", action="store_true", help="print JSON instead of text")
  ap.add_argument("--reveal", help="CSV of withheld target rows: report each suggestion's true "
                  "value and regret (tests and demos)")
  ap.add_argument("--seed", type=int, default=0, help="seed of a stochastic peer")
  ap.add_argument("--export", metavar="TABLE", help="write a built-in table as a demo sweep "
                  "(runs.csv, spec.json) to --out, withholding --withhold")
  ap.add_argument("--withhold", help="with --export: the fidelity whose rows are held out")
  ap.add_argument("--out", help="with --export: the output directory")
  a = ap.parse_args(argv)
  try:
    if a.export:
      from autollmr import sources
      if not a.out:
        raise Refusal("--export needs --out DIR")
      paths = export_table(sources.load_table(a.export), a.out, a.withhold)
      print(json.dumps(paths, indent=1) if a.json else "\n".join(
          f"{k}: {v}" for k, v in paths.items()))
      return 0
    if not a.spec or not a.target:
      raise Refusal("--spec PATH and --target NAME are required")
    out = advise(a.spec, a.target, a.k, a.agent, a.method, a.policy, a.reveal, a.seed)
  except (Refusal, spec_lib.SpecError, KeyError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(json.dumps(out, indent=1) if a.json else format_text(out))
  return 0


if __name__ == "__main__":
  sys.exit(main())
