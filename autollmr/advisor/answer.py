"""The advisor: the next runs to launch at an expensive fidelity, from a lab's own cheap runs
(the command is autollmr/advise.py).

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
the search continues from everything in the CSV (tests/advisor/test_advise.py checks it).

Each suggestion carries: the config (in the CSV's columns, transforms inverted), a predicted score
and objective value (kernel regression over the known results; `choosers.kernel_predict`), the
spread of that evidence as its uncertainty, its predicted rank among the candidates, the policy's
probability, and the evidence (the known results with the largest saliency for the policy, or the
largest kernel weight for a peer). --reveal PATH (for tests and demos) reads withheld target rows
and reports each suggestion's true value and regret. A spec the agent cannot represent (too many
config or fidelity features, no fidelity features, nothing cheaper than the target) is refused with
a message naming what is missing.
"""
from __future__ import annotations

import json
import os

import ml_collections
import numpy as np

from autollmr import errors
from autollmr.advisor import sweep
from autollmr.agent import checkpoints
from autollmr.evaluation import choosers
from autollmr.gym import build
from autollmr.gym import table as table_lib
from autollmr.gym.reference import ReferenceEnv
from autollmr.gym.table import Table
from autollmr.gym.tasks import Task
from autollmr.peers import base as peer_base
from autollmr.peers import learned
from autollmr.peers import registry
from configs import common

EXTRA_TURNS = 2  # as tasks.curate at rho = 1: the policy's turn fraction means the same


class Refusal(errors.UserError):
  """The advisor cannot answer this question; the message says what is missing."""


def load_agent(agent_dir: str, policy: str = "auto"):
  """(model, config, which) from a workdir of `python -m autollmr.main` (its config.json and
  its RL or SFT checkpoint; auto: RL when there is one, the final stage)."""
  path = os.path.join(agent_dir, "config.json")
  if not os.path.exists(path):
    raise Refusal(f"--agent {agent_dir}: no config.json there (not a workdir of "
                  "`python -m autollmr.main`)")
  with open(path) as f:
    config = ml_collections.ConfigDict(json.load(f))
  order = {"auto": ("rl", "sft"), "rl": ("rl",), "sft": ("sft",)}[policy]
  for which in order:
    model = (checkpoints.load_rl_policy if which == "rl"
             else checkpoints.load_sft_policy)(config, agent_dir)
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
    return choosers.AgentChooser(model, ctx.cand_exists_A, table_lib.family_id(table.family),
                                 task.max_turns)
  return choosers.PeerChooser(registry.PEERS[method](ctx, seed), ctx.cand_exists_A)


def advise(spec_path: str, target: str, k: int = 3, agent_dir: str | None = None,
           method: str | None = None, policy: str = "auto", reveal: str | None = None,
           seed: int = 0) -> dict:
  """The advice as a JSON-able dict (see `format_text`). Raises Refusal / SpecError."""
  if (agent_dir is None) == (method is None):
    raise Refusal("give exactly one of --agent DIR (a trained workdir) or --method NAME "
                  f"(a peer: {', '.join(sorted(registry.PEERS))})")
  if k < 1:
    raise Refusal(f"--k must be >= 1, got {k}")
  spec, table, plan = sweep.load(spec_path)
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
    config = common.base()
    if method not in registry.PEERS:
      raise Refusal(f"--method {method!r} is not a peer; peers: {sorted(registry.PEERS)}")
    if not registry.applicable(method, table):
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
  params, sizes = build.make_params(
      env_table, [task], max_cheap_rows=cap, max_target_configs=int((done_C | open_C).sum()))
  learned.set_training_sources(None)
  ctx = peer_base.make_context(table, task, params, 0)  # the real table: no placeholder in it
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
      mu_all, _ = choosers.kernel_predict(view, exists, np.flatnonzero(open_A))
      a = int(np.flatnonzero(open_A)[np.nanargmax(mu_all)])
    mu, sd = (float(x[0]) for x in choosers.kernel_predict(view, exists, [a]))
    others, _ = choosers.kernel_predict(view, exists, np.flatnonzero(open_A))
    lo, hi = choosers.to_raw(p, 0, t, mu - sd), choosers.to_raw(p, 0, t, mu + sd)
    ev = chooser.evidence(view, a)
    suggestions.append(
        dict(
            rank=i + 1,
            config=sweep.columns(spec, table, int(cfg[a])),
            features={
                n: float(x)
                for n, x in zip(table.config_feature_names, table.config_features_CxD[cfg[a]])
            },
            label=table.config_labels[cfg[a]] if table.config_labels else str(int(cfg[a])),
            predicted=dict(
                score=mu,
                spread=sd,
                value=float(choosers.to_raw(p, 0, t, mu)),
                value_spread=float(abs(hi - lo) / 2),
                on_scale_of=table.fidelity_names[near],
                better_than_pct=float(100 * np.mean(others < mu))),
            policy_prob=chooser.prob,
            evidence=[
                dict(
                    fidelity=table.fidelity_names[fid[e]],
                    config=sweep.columns(spec, table, int(cfg[e])),
                    value=float(p.values_FxC[fid[e], cfg[e]])
                    if not (fid[e] == t and not done_C[cfg[e]]) else None,
                    score=float(view["value_A"][e]),
                    weight=w) for e, w in ev
            ]))
    # Kriging believer: the suggestion is taken to come out as predicted, then ask again.
    slot = ref.turn
    ref.queried[slot], ref.values[slot] = a, np.float32(choosers.to_raw(p, 0, t, mu))
    ref.turn += 1
    ref.budget_left = np.float32(ref.budget_left - 1.0)
    chooser.tell(a, mu)

  best = None
  if done_C.any():
    c = int(np.flatnonzero(done_C)[np.argmin(sign * table.values_FxC[t, done_C])])
    best = dict(config=sweep.columns(spec, table, c), value=float(table.values_FxC[t, c]),
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


def add_truth(out: dict, spec: dict, table: Table, t: int, reveal: str, spec_path: str) -> None:
  """Adds each suggestion's true value, regret and percentile from withheld target rows (a CSV
  with the runs' columns), over the target configs of the reveal file and the CSV together."""
  base = os.path.dirname(os.path.abspath(spec_path))
  rv = sweep.compile_rows(spec, base, os.path.abspath(reveal))
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
