"""Transcripts: any episode as Markdown a researcher reads in a minute, and the evidence helpers
the advisor (advise.py) shares.

A transcript shows the task, the results known before the first query, every query with its
predicted and observed outcome, the evidence behind each query, and the recommendation with its
regret and percentile. Episodes are replayed one decision at a time on `ReferenceEnv` (the env's
plain twin), so every view the method saw can be shown; a greedy agent replayed here matches its
jitted evaluation episode up to floating-point ties.

Evidence (why this choice): for the policy, GRADIENT SALIENCY of the chosen action's log-prob with
respect to the known tokens' values, d log p(a) / d value_k, by central finite differences. Not
autodiff: the model's kernel-regression input features (model.kernel_features) stop gradients,
and they are the main path from a known value to a candidate's logit, so jax.grad would miss most
of it (and attention weights would miss it entirely). The pool is the chosen candidate's nearest
known results by the kernel below plus the best known ones (POOL slots, one batched forward pass),
not all known tokens: a far, mediocre result moves no logit, and the pass stays cheap. For peers
without a policy: the known results the kernel regression weighs most for the chosen config.

Predicted outcome of a query: a kernel-regression prediction from the results known at the moment
of the query, labelled so everywhere. The policy's value head predicts the episode's return, not a
config's outcome, so it is not used as one.

Scores are the env's normalized outcomes (higher is better; 0 = the median of the nearest cheaper
fidelity, +-1 about one interquartile range; symlog-compressed, see env.normalize).
"""
from __future__ import annotations

import json
import os
import re

import numpy as np

from autollmr import model as model_lib
from autollmr.env_reference import ReferenceEnv

KERNEL_H, KERNEL_LAM = 0.1, 2.0  # bandwidth (mean sq. standardized distance), fidelity weight
POOL = 16  # known results whose saliency is measured per decision (one forward pass of 2 POOL+1)
NEAR_IN_POOL = 12  # of which the nearest by the kernel; the rest the best known
DELTA = 0.1  # finite-difference step, in score units
N_EVIDENCE = 3  # evidence rows shown per query


# --- kernel regression over the known results (numpy; the same geometry as model.geometry) -------

def _standardize(x_AxD, exists_A):
  x = np.asarray(x_AxD, np.float64)
  if x.shape[1] == 0:
    return x, 1
  m, s = x[exists_A].mean(0), x[exists_A].std(0)
  ok = s > 1e-6
  return np.where(ok, (x - m) / np.where(ok, s, 1.0), 0.0), max(int(ok.sum()), 1)


def kernel_weights(view, exists_A, rows) -> np.ndarray:
  """w_RxA: for each candidate in `rows`, softmax over the known results of
  -(d2 / h + lam * df2) (zero elsewhere); d2 in standardized config space, df2 in standardized
  fidelity-feature space, as the policy's kernel features and the teacher compute them."""
  known = np.flatnonzero(np.asarray(view["known_A"]) & exists_A)
  rows = np.atleast_1d(np.asarray(rows, np.int64))
  w = np.zeros((len(rows), len(exists_A)))
  if known.size == 0:
    return w
  z, nvar = _standardize(view["config_features_AxD"], exists_A)
  zf, _ = _standardize(view["fidelity_features_AxG"], exists_A)
  sq = lambda a, b: np.maximum((a ** 2).sum(1)[:, None] + (b ** 2).sum(1)[None]
                               - 2 * a @ b.T, 0.0)
  logit = -(sq(z[rows], z[known]) / nvar / KERNEL_H + KERNEL_LAM * sq(zf[rows], zf[known]))
  logit -= logit.max(1, keepdims=True)
  e = np.exp(logit)
  w[:, known] = e / e.sum(1, keepdims=True)
  return w


def kernel_predict(view, exists_A, rows):
  """(mean, spread) of the score of each candidate in `rows`: the kernel-weighted mean of the
  known scores and their kernel-weighted standard deviation (how much the evidence disagrees)."""
  w = kernel_weights(view, exists_A, rows)
  v = np.asarray(view["value_A"], np.float64)
  mu = w @ v
  sd = np.sqrt(np.maximum(w @ v ** 2 - mu ** 2, 0.0))
  empty = w.sum(1) == 0
  return np.where(empty, np.nan, mu), np.where(empty, np.nan, sd)


def to_raw(p, task: int, f: int, score):
  """The objective value whose env score is `score` at fidelity f (env.normalize inverted; exact
  inside the clip)."""
  s = np.asarray(score, np.float64)
  z = np.sign(s) * np.expm1(np.abs(s))
  sign = float(p.sign)
  return float(p.loc_NxF[task, f]) - sign * z * float(p.scale_NxF[task, f])


# --- the policy on a ReferenceEnv view ------------------------------------------------------------

def policy_inputs(view, exists_A, family: int, max_turns: int, pad: int = 256,
                  d_max: int | None = None, g_max: int | None = None) -> dict:
  """agent.view's batch of one, from ReferenceEnv.expand(). The candidate axis is padded (absent
  candidates) to a multiple of `pad` and the feature axes with zeros to d_max / g_max (constant
  features standardize to 0: the policy's input is unchanged), so every table of a similar size
  shares one compiled program."""
  import jax.numpy as jnp
  A = len(exists_A)
  extra = -A % pad

  def grow(x, width=None):
    x = np.asarray(x)
    if not x.ndim or x.shape[0] != A:
      return x
    cols = [(0, 0)] * (x.ndim - 1)
    if width is not None and x.ndim == 2:
      cols = [(0, max(width - x.shape[1], 0))]
    return np.pad(x, [(0, extra)] + cols)
  widths = {"config_features_AxD": d_max, "fidelity_features_AxG": g_max}
  v = {k: jnp.asarray(grow(x, widths.get(k)))[None] for k, x in view.items()}
  v["exists_A"] = jnp.asarray(grow(exists_A))[None]
  v["family"] = jnp.asarray([family], jnp.int32)
  v["turn_frac"] = jnp.asarray([float(view["turn"]) / max(int(max_turns), 1)], jnp.float32)
  return v


_LOGP = {}


def log_probs(model, v, bump_BxA=None) -> np.ndarray:
  """log softmax of the policy's masked pointer logits for one view (batch of one) with each row
  of `bump_BxA` added to its known values: B x A. Two compiled programs per candidate count: one
  row (choosing; no bump) and 1 + 2 * POOL rows (saliency)."""
  import jax.numpy as jnp
  if "f" not in _LOGP:
    from flax import nnx
    import jax

    @nnx.jit
    def f(model, v, bump):
      vb = {k: jnp.broadcast_to(x, (bump.shape[0],) + x.shape[1:]) for k, x in v.items()}
      vb["value_A"] = vb["value_A"] + bump
      logits, _ = model(vb)
      return jax.nn.log_softmax(logits, -1)
    _LOGP["f"] = f
  if bump_BxA is None:
    bump_BxA = np.zeros((1, v["value_A"].shape[1]), np.float32)
  return np.asarray(_LOGP["f"](model, v, jnp.asarray(bump_BxA)))


def saliency(model, v, action: int, pool) -> np.ndarray:
  """d log p(action) / d value_k for each known candidate k in `pool` (at most POOL), by central
  differences: rows 2j+1, 2j+2 move candidate pool[j]'s value by +-DELTA."""
  pool = np.asarray(pool, np.int64)[:POOL]
  bump = np.zeros((1 + 2 * POOL, v["value_A"].shape[1]), np.float32)
  j = np.arange(len(pool))
  bump[1 + 2 * j, pool] = DELTA
  bump[2 + 2 * j, pool] = -DELTA
  lp = log_probs(model, v, bump)[:, action]
  return (lp[1 + 2 * j] - lp[2 + 2 * j]) / (2 * DELTA)


def evidence_pool(view, exists_A, action: int) -> np.ndarray:
  """The known candidates whose saliency is measured: nearest by the kernel, then the best."""
  known = np.flatnonzero(np.asarray(view["known_A"]) & exists_A)
  w = kernel_weights(view, exists_A, [action])[0]
  near = known[np.argsort(-w[known], kind="stable")][:NEAR_IN_POOL]
  best = known[np.argsort(-np.asarray(view["value_A"])[known], kind="stable")]
  pool = list(near) + [a for a in best if a not in set(near)][:POOL - len(near)]
  return np.asarray(pool, np.int64)


class AgentChooser:
  """The greedy policy as a step-by-step chooser; evidence by finite-difference saliency."""
  kind, evidence_col = "policy", "saliency"
  evidence_label = "saliency d log p(query) / d score (finite differences)"

  def __init__(self, model, exists_A, family: int, max_turns: int):
    self.model, self.exists, self.family, self.max_turns = model, exists_A, family, max_turns
    self.prob = None

  def act(self, view) -> int:
    self.v = policy_inputs(view, self.exists, self.family, self.max_turns,
                           d_max=self.model.d_max, g_max=self.model.g_max)
    lp = log_probs(self.model, self.v)[0][:len(self.exists)]
    a = int(np.argmax(lp))
    self.prob = float(np.exp(lp[a]))
    return a

  def tell(self, action, value):
    pass

  def evidence(self, view, action: int, n: int = N_EVIDENCE):
    pool = evidence_pool(view, self.exists, action)
    if pool.size == 0:
      return []
    s = saliency(self.model, self.v, action, pool)
    order = np.argsort(-np.abs(s), kind="stable")[:n]
    return [(int(pool[i]), float(s[i])) for i in order]


class PeerChooser:
  """A peer (peers.py) as a chooser; evidence = the known results the kernel weighs most."""
  kind, evidence_col = "peer", "kernel weight"
  evidence_label = "kernel weight of the known result in the query's predicted score"

  def __init__(self, peer, exists_A):
    self.peer, self.exists, self.prob = peer, exists_A, None

  def act(self, view) -> int:
    return int(self.peer.act(view))

  def tell(self, action, value):
    self.peer.tell(action, value)

  def evidence(self, view, action: int, n: int = N_EVIDENCE):
    w = kernel_weights(view, self.exists, [action])[0]
    top = np.argsort(-w, kind="stable")[:n]
    return [(int(a), float(w[a])) for a in top if w[a] > 0]


# --- recording and rendering an episode -----------------------------------------------------------

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
  from autollmr import peers as peers_lib
  ref = ReferenceEnv(params, sizes, auto_reset=False)
  p, i = ref.p, int(task_index)
  ctx = peers_lib.make_context(table, task, params, i)
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
    mu, sd = kernel_predict(view, exists, [a]) if ok else (np.array([np.nan]),) * 2
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


# --- the evaluation's transcripts ----------------------------------------------------------------

def eval_choosers(config, workdir, methods) -> list:
  """[(method, factory(ctx, table, task, seed) -> chooser)]: the workdir's final agent (RL if
  trained, else SFT); without one, a classical peer (topk_transfer if evaluated), so a peers-only
  eval still has transcripts."""
  from autollmr import agent
  from autollmr import peers as peers_lib
  from autollmr import rl
  from autollmr import sft
  for method, load in ((rl.METHOD, rl.load_policy), (agent.METHOD, sft.load_policy)):
    model = load(config, workdir)
    if model is not None:
      return [(method, _agent_factory(model))]
  classical = [m for m in methods if m in peers_lib.PEERS and m not in ("meta_regressor", "fsbo")]
  pick = "topk_transfer" if "topk_transfer" in classical else (classical or [None])[0]
  if pick is None:
    return []
  return [(pick, lambda ctx, table, task, seed, m=pick: PeerChooser(
      peers_lib.PEERS[m](ctx, seed), ctx.cand_exists_A))]


def _agent_factory(model):
  return lambda ctx, table, task, seed: AgentChooser(model, ctx.cand_exists_A,
                                                     model_lib.family_id(table.family),
                                                     task.max_turns)


def pick_tasks(test, n: int) -> list[int]:
  """n test tasks of a family: every target at the largest budget, then the next budget, ..."""
  order = sorted(range(len(test)), key=lambda i: (-test[i].budget, i))
  return order[:max(n, 0)]


def write_eval_transcripts(config, workdir, tables, splits, out_dir, methods=()) -> list[dict]:
  """config.eval.transcripts episodes per family of `eval_choosers`' method, as *.md in
  DIR/transcripts/, plus DIR/transcripts/queries.jsonl (what plots.landscape overlays).
  Returns the query records."""
  from autollmr import evaluate
  n = int(config.eval.transcripts)
  if n <= 0:
    return []
  choosers = eval_choosers(config, workdir, methods)
  tdir = os.path.join(out_dir, "transcripts")
  os.makedirs(tdir, exist_ok=True)
  queries = []
  for name in sorted(splits):
    test = splits[name]["test"]
    picks = pick_tasks(test, n)
    if not picks:
      continue
    table = tables[name]
    params, sizes = evaluate.build_eval_params(table, test, config)
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


# --- any episode from the command line ------------------------------------------------------------

def main(argv=None) -> int:
  """python -m autollmr.transcripts --workdir=DIR --table=NAME [--method=sft_agent] [--target=T]
  [--budget=K] [--seed=S]: one test episode of a workdir's agent (or a peer) as Markdown."""
  import argparse
  import sys
  import ml_collections
  from autollmr import evaluate
  from autollmr import peers as peers_lib
  from autollmr import pipeline
  ap = argparse.ArgumentParser(prog="python -m autollmr.transcripts", description=main.__doc__)
  ap.add_argument("--workdir", required=True)
  ap.add_argument("--table", required=True)
  ap.add_argument("--method", default="", help="sft_agent, rl_agent or a peer (default: the "
                  "workdir's RL agent, else SFT, else topk_transfer)")
  ap.add_argument("--target", default="", help="a test target (default: the first)")
  ap.add_argument("--budget", type=float, default=0, help="default: the largest")
  ap.add_argument("--seed", type=int, default=0)
  a = ap.parse_args(argv)
  if not os.path.exists(os.path.join(a.workdir, "config.json")):
    print(f"autollmr.transcripts: {a.workdir} has no config.json (not a workdir of "
          "`python -m autollmr.main`)", file=sys.stderr)
    return 2
  with open(os.path.join(a.workdir, "config.json")) as f:
    config = ml_collections.ConfigDict(json.load(f))
  from autollmr import sources
  tables = {a.table: sources.load_table(a.table, config.data_dir or None)}
  test = pipeline.curate_all(config, tables)[a.table]["test"]
  pick = [i for i, t in enumerate(test) if (not a.target or t.target == a.target)
          and (not a.budget or t.budget == a.budget)]
  if not pick:
    print(f"autollmr.transcripts: no test task of {a.table} with target {a.target!r} and budget "
          f"{a.budget:g}; targets: {sorted({t.target for t in test})}", file=sys.stderr)
    return 2
  i = max(pick, key=lambda j: (test[j].budget, -j))
  from autollmr import agent
  from autollmr import rl
  from autollmr import sft
  loaders = {rl.METHOD: rl.load_policy, agent.METHOD: sft.load_policy}
  if a.method in loaders:
    model = loaders[a.method](config, a.workdir)
    if model is None:
      print(f"autollmr.transcripts: no {a.method} checkpoint in {a.workdir}", file=sys.stderr)
      return 2
    method, factory = a.method, _agent_factory(model)
  elif a.method:
    if a.method not in peers_lib.PEERS:
      print(f"autollmr.transcripts: no method {a.method!r}; agents: {sorted(loaders)}, peers: "
            f"{sorted(peers_lib.PEERS)}", file=sys.stderr)
      return 2
    method = a.method
    factory = lambda ctx, table, task, seed: PeerChooser(peers_lib.PEERS[method](ctx, seed),
                                                         ctx.cand_exists_A)
  else:
    method, factory = eval_choosers(config, a.workdir, ["topk_transfer"])[0]
  table = tables[a.table]
  params, sizes = evaluate.build_eval_params(table, test, config)
  ep = record_episode(table, test[i], params, sizes, i, a.seed, method,
                      lambda ctx: factory(ctx, table, test[i], a.seed))
  print(render(ep, table))
  return 0


if __name__ == "__main__":
  import sys
  sys.exit(main())
