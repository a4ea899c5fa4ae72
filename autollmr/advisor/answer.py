"""The advisor: the next runs to launch at an expensive fidelity, from a lab's own cheap runs
(the command is autollmr/advise.py).

Reads the runs through a table spec (data_tables/README.md). The target fidelity may have no rows:
its candidate configs are then the spec's planned runs (spec key `candidates`: a CSV of runs you
could launch, objective empty), which also give the target's fidelity features and cost; without
planned rows at the target, the candidates are the configs seen at any other fidelity. Known:
every result at a fidelity cheaper than the target (capped as the env caps cheap rows) and every
target run already in the CSV.

One question (`prepare`) is one task of the env (a ReferenceEnv at rho = 1, its target runs so far
already played) and a chooser: the trained policy or a peer (--method). `suggest` asks it for one
target config, `observe` plays that config with a value, and the method is asked again:
- advise (k suggestions): the value is the kernel regression's prediction (a "kriging believer"),
  so suggestion 2 is what the method would do next if 1 went as expected. Stateless over the CSV:
  after running a suggestion, add its row and ask again; the search continues from everything in
  the CSV (tests/advisor/test_advise.py checks it).
- play (--play K --reveal FILE, a back-test): the value is the true one from the withheld rows,
  so the method sees every earlier result, as in a real sequential search of budget K. The target
  candidates are then the open configs that have a row in the reveal file (others cannot be
  scored; the output counts them), and each run reports its value and the regret of the best run
  so far (the CSV's target runs included), normalized as in --reveal: over the target configs of
  the reveal file and the CSV, 0 = the best of them, 1 = the worst.

Each suggestion carries: the config (in the CSV's columns, transforms inverted), a predicted score
and objective value (kernel regression over the known results; `choosers.kernel_predict`), the
spread of that evidence as its uncertainty, its predicted rank among the candidates, the policy's
probability, and the evidence (the known results with the largest saliency for the policy, or the
largest kernel weight for a peer). --reveal PATH (for tests and demos) reads withheld target rows
and reports each suggestion's true value and regret. A spec the agent cannot represent (too many
config or fidelity features, no fidelity features, nothing cheaper than the target) is refused with
a message naming what is missing. The policy named is the one played: the RL stage may have kept
the distilled policy (checkpoints.rl_policy_played).

Speed: the command keeps JAX's compiled programs in a persistent cache (`use_compile_cache`), the
policy is kept as jax.export programs with its parameters (advisor/policy_cache.py: a repeated
question neither restores the checkpoint nor traces the model), and its inputs are bucketed
(`choosers.policy_inputs`: candidates padded to a multiple of 256 with absent, masked candidates;
the config and fidelity features to the model's maxima; known results and turns are no axis of
the input, the model attends to model.max_keys slots), so a new table of a similar size reuses the
compiled program (tests/advisor/test_play.py checks that two bucket sizes give the same answer).
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys

import jax
import ml_collections
import numpy as np

from autollmr.advisor import policy_cache
from autollmr.advisor import sweep
from autollmr.evaluation import choosers
from autollmr.gym import build
from autollmr.gym import table as table_lib
from autollmr.gym.reference import ReferenceEnv
from autollmr.gym.table import Table
from autollmr.gym.tasks import Task
from autollmr.lazy import lazy
from autollmr.peers import base as peer_base
from configs import common


# The peers load sklearn and optuna (~1 s of a 3 s answer), which the agent's path never uses.
registry = lazy("autollmr.peers.registry")
learned = lazy("autollmr.peers.learned")

EXTRA_TURNS = 2  # as tasks.curate at rho = 1: the policy's turn fraction means the same


Refusal = policy_cache.Refusal


def use_compile_cache() -> str | None:
  """Keeps JAX's compiled programs on disk (unless a cache is already set, e.g. by
  $JAX_COMPILATION_CACHE_DIR): under $AUTOLLMR_CACHE/jax, else ~/.cache/autollmr/jax. Small
  programs are kept too: the policy's compile is most of a repeated question's time."""
  if jax.config.jax_compilation_cache_dir is None:
    jax.config.update("jax_compilation_cache_dir",
                      os.path.join(policy_cache.cache_root(), "jax"))
  if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  if "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES" not in os.environ:
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  return jax.config.jax_compilation_cache_dir


def policy_label(which: str, played: dict) -> str:
  """'rl policy', or e.g. 'sft policy (the RL stage kept the distilled policy ...)'."""
  if which == "sft":
    return "sft policy"
  if played["played"] == "rl":
    return "rl policy" + (f" (step {played['step']})" if played.get("step") else "")
  return f"{played['played']} policy ({played['note']})"


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


@dataclasses.dataclass
class Question:
  """One question to the advisor: the sweep, the target, its env (a ReferenceEnv with the target
  runs so far played) and the method's chooser."""
  spec: dict
  spec_path: str
  table: Table  # runs + planned runs (no revealed value in it)
  t: int  # the target fidelity
  done_C: np.ndarray  # target runs in the CSV
  open_C: np.ndarray  # target candidates not yet run
  from_plan: bool
  visible: list
  ignored: int
  method: str  # what the output calls the method
  policy: dict | None  # the agent's policy: which was asked for, which played
  ref: ReferenceEnv
  ctx: peer_base.PeerContext
  chooser: object
  truth: dict | None = None  # label -> revealed value (play)
  left_out: int = 0  # open configs without a revealed value (play)

  @property
  def near(self) -> int:  # the target is scored on this fidelity's scale
    return max(self.visible, key=lambda f: self.table.cost_F[f])

  @property
  def is_target_A(self) -> np.ndarray:
    return self.ctx.cand_exists_A & (self.ctx.cand_fid_A == self.t)


def load_method(table: Table, t: int, visible: list[int], agent_dir: str | None,
                method: str | None, policy: str):
  """(agent or None, config, label, policy info or None)."""
  if agent_dir is not None:
    agent = policy_cache.ExportedPolicy(agent_dir, policy)
    check_agent_can_read(table, t, visible, agent.config)
    label = f"agent {agent_dir} ({policy_label(agent.which, agent.played)})"
    return agent, agent.config, label, dict(asked=policy, loaded=agent.which, **agent.played)
  if method not in registry.PEERS:
    raise Refusal(f"--method {method!r} is not a peer; peers: {sorted(registry.PEERS)}")
  if not registry.applicable(method, table):
    raise Refusal(f"--method {method} does not apply to this spec: it needs config features "
                  "(log2_lr, log2_bs_tokens) and fidelity features log10_N, log10_D; this spec "
                  f"has {table.config_feature_names} / {table.fidelity_feature_names}")
  return None, common.base(), f"peer {method}", None


def prepare(spec_path: str, target: str, k: int, agent_dir: str | None = None,
            method: str | None = None, policy: str = "auto", seed: int = 0,
            play_reveal: str | None = None) -> Question:
  """The question of k runs at `target`. play_reveal: the withheld rows the runs are played
  against (the open candidates are those it has; the env reveals their true values)."""
  if (agent_dir is None) == (method is None):
    raise Refusal("give exactly one of --agent DIR (a trained workdir) or --method NAME "
                  f"(a peer: {', '.join(sorted(registry.PEERS))})")
  if k < 1:
    raise Refusal(f"--{'play' if play_reveal else 'k'} must be >= 1, got {k}")
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
  truth, left_out, values_t = None, 0, np.where(open_C, 0.0, table.values_FxC[t])
  if play_reveal is not None:
    truth = truth_of(spec, table, t, play_reveal, spec_path)
    labels = config_labels(table)
    has_C = np.array([c in truth for c in labels], bool)
    left_out = int((open_C & ~has_C).sum())
    if not (open_C & has_C).any():
      raise Refusal(f"--reveal {play_reveal}: none of the {int(open_C.sum())} open candidate "
                    f"configs at {target!r} has a row there: nothing to play")
    open_C &= has_C
    if int(open_C.sum()) < k:
      raise Refusal(f"--play {k}: only {int(open_C.sum())} open candidate configs at {target!r} "
                    f"have a row in --reveal {play_reveal}; play at most that many")
    # The true values sit in the env (revealed only when played; no policy input reads them).
    values_t = np.where(open_C, [truth.get(c, 0.0) for c in labels], values_t)
  elif not open_C.any():
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
  agent, config, label, policy_info = load_method(table, t, visible, agent_dir, method, policy)
  n_done = int(done_C.sum())
  cap = int(config.env.max_cheap_rows)
  if agent is not None:  # the policy attends to at most max_keys known results
    cap = min(cap, int(config.model.max_keys) - n_done - k)
    if cap < 1:
      raise Refusal(f"{n_done} target runs + k = {k} fill the agent's {config.model.max_keys} "
                    "attended results (model.max_keys): ask for fewer runs")

  # The env of this question: the target's candidates are its runs (their results) and the open
  # configs (a placeholder value, or under play the true one: revealed only when played).
  env_table = table.with_changes(
      values_FxC=np.concatenate([table.values_FxC[:t], values_t[None], table.values_FxC[t + 1:]]
                                ).astype(np.float32),
      valid_FxC=np.concatenate([table.valid_FxC[:t], (done_C | open_C)[None],
                                table.valid_FxC[t + 1:]]))
  task = Task(table.name, target, tuple(table.fidelity_names[f] for f in visible), rho=1.0,
              budget=float(k), max_turns=n_done + k + EXTRA_TURNS, split="advise")
  params, sizes = build.make_params(
      env_table, [task], max_cheap_rows=cap, max_target_configs=int((done_C | open_C).sum()))
  ctx = peer_base.make_context(table, task, params, 0)  # the real table: no placeholder in it
  ref = ReferenceEnv(params, sizes, auto_reset=False)
  ref.reset(0, seed)
  q = Question(spec=spec, spec_path=spec_path, table=table, t=t, done_C=done_C, open_C=open_C,
               from_plan=from_plan, visible=visible, ignored=ignored, method=label,
               policy=policy_info, ref=ref, ctx=ctx, chooser=None, truth=truth, left_out=left_out)
  for a in np.flatnonzero(q.is_target_A & done_C[ctx.cand_config_A]):  # the target runs so far
    record(q, int(a), table.values_FxC[t, ctx.cand_config_A[a]], budget=False)
  if agent is not None:
    q.chooser = choosers.AgentChooser(agent, ctx.cand_exists_A,
                                      table_lib.family_id(table.family), task.max_turns,
                                      log_probs_fn=agent.log_probs)
  else:
    learned.set_training_sources(None)
    q.chooser = choosers.PeerChooser(registry.PEERS[method](ctx, seed), ctx.cand_exists_A)
  return q


def record(q: Question, a: int, y, budget: bool = True) -> None:
  """Candidate `a` counts as played with objective value y (the env's bookkeeping of a target
  query: its slot, the turn, the budget, the best so far)."""
  ref = q.ref
  ref.queried[ref.turn], ref.values[ref.turn] = int(a), np.float32(y)
  ref.turn += 1
  if budget:
    ref.budget_left = np.float32(ref.budget_left - 1.0)
  if ref.p.sign * np.float32(y) < ref.best:
    ref.best, ref.best_config = np.float32(ref.p.sign * np.float32(y)), int(q.ctx.cand_config_A[a])


def suggest(q: Question, rank: int) -> tuple[int, float, dict]:
  """(candidate, predicted score, the suggestion as a dict): the method's next target run."""
  table, t, ref, p = q.table, q.t, q.ref, q.ref.p
  cfg, fid, exists = q.ctx.cand_config_A, q.ctx.cand_fid_A, q.ctx.cand_exists_A
  view = ref.expand()
  a = int(q.chooser.act(view))
  open_A = q.is_target_A & ~np.asarray(view["known_A"])
  if not (0 <= a < len(exists) and open_A[a]):  # a peer chose a cheap row or a repeat
    mu_all, _ = choosers.kernel_predict(view, exists, np.flatnonzero(open_A))
    a = int(np.flatnonzero(open_A)[np.nanargmax(mu_all)])
  mu, sd = (float(x[0]) for x in choosers.kernel_predict(view, exists, [a]))
  others, _ = choosers.kernel_predict(view, exists, np.flatnonzero(open_A))
  lo, hi = choosers.to_raw(p, 0, t, mu - sd), choosers.to_raw(p, 0, t, mu + sd)
  ev = q.chooser.evidence(view, a)
  known_t = q.done_C.copy()  # target configs with a true value (played ones too under play)
  if q.truth is not None:
    known_t[cfg[[b for b in ref.queried if b >= 0]]] = True
  return a, mu, dict(
      rank=rank,
      config=sweep.columns(q.spec, table, int(cfg[a])),
      features={n: float(x)
                for n, x in zip(table.config_feature_names, table.config_features_CxD[cfg[a]])},
      label=config_labels(table)[cfg[a]],
      predicted=dict(
          score=mu, spread=sd, value=float(choosers.to_raw(p, 0, t, mu)),
          value_spread=float(abs(hi - lo) / 2), on_scale_of=table.fidelity_names[q.near],
          better_than_pct=float(100 * np.mean(others < mu))),
      policy_prob=q.chooser.prob,
      evidence=[
          dict(fidelity=table.fidelity_names[fid[e]],
               config=sweep.columns(q.spec, table, int(cfg[e])),
               value=float(p.values_FxC[fid[e], cfg[e]]) if fid[e] != t or known_t[cfg[e]]
               else None,
               score=float(view["value_A"][e]), weight=w) for e, w in ev])


def config_labels(table: Table) -> list[str]:
  return list(table.config_labels) if table.config_labels else [
      str(c) for c in range(table.num_configs)]


def header(q: Question, k: int) -> dict:
  """What every answer starts with: the question and what is known."""
  table, exists = q.table, q.ctx.cand_exists_A
  out = dict(
      table=table.name, objective=table.objective, direction=table.direction,
      target=table.fidelity_names[q.t], method=q.method, k=k, candidates=int(q.open_C.sum()),
      candidates_from="planned runs (spec key 'candidates')" if q.from_plan else
      "configs seen at other fidelities",
      known=dict(cheap_results=int((exists & ~q.is_target_A).sum()),
                 cheap_fidelities=[table.fidelity_names[f] for f in q.visible],
                 cheap_results_available=int(sum(table.valid_FxC[f].sum() for f in q.visible)),
                 target_runs=int(q.done_C.sum()), ignored_costlier_or_equal=q.ignored))
  if q.policy is not None:
    out["policy"] = q.policy
  return out


def best_run(q: Question) -> dict | None:
  """The best target run in the CSV so far (None without one)."""
  if not q.done_C.any():
    return None
  table, t, sign = q.table, q.t, q.table.sign()
  c = int(np.flatnonzero(q.done_C)[np.argmin(sign * table.values_FxC[t, q.done_C])])
  return dict(config=sweep.columns(q.spec, table, c), value=float(table.values_FxC[t, c]),
              label=config_labels(table)[c])


def advise(spec_path: str, target: str, k: int = 3, agent_dir: str | None = None,
           method: str | None = None, policy: str = "auto", reveal: str | None = None,
           seed: int = 0) -> dict:
  """The advice as a JSON-able dict (see `format_text`). Raises Refusal / SpecError."""
  q = prepare(spec_path, target, k, agent_dir, method, policy, seed)
  suggestions = []
  for i in range(k):
    a, mu, s = suggest(q, i + 1)
    suggestions.append(s)
    # Kriging believer: the suggestion is taken to come out as predicted, then ask again.
    record(q, a, choosers.to_raw(q.ref.p, 0, q.t, mu))
    q.chooser.tell(a, mu)
  out = dict(header(q, k), best_so_far=best_run(q), suggestions=suggestions,
             evidence_kind=q.chooser.evidence_col,
             notes=["Suggestions 2..k assume the earlier ones come out as predicted (kriging "
                    "believer): run them, add their rows to the CSV and ask again.",
                    "Predicted: kernel regression over the known results (not the policy's), on "
                    f"the scale of {q.table.fidelity_names[q.near]}; score: higher is better, 0 = "
                    "that fidelity's median, +-1 about one IQR. A level shift to the target is "
                    "only seen through target runs already in the CSV."])
  if reveal:
    add_truth(out, q.spec, q.table, q.t, reveal, spec_path)
  return out


def play(spec_path: str, target: str, k: int, reveal: str | None, agent_dir: str | None = None,
         method: str | None = None, policy: str = "auto", seed: int = 0) -> dict:
  """Plays k target runs against withheld results (--play K --reveal FILE): each run is the
  method's answer given every earlier one's true value; see the module docstring."""
  if not reveal:
    raise Refusal("--play K needs --reveal FILE: the withheld results the runs are played against")
  q = prepare(spec_path, target, k, agent_dir, method, policy, seed, play_reveal=reveal)
  judge = judge_of(q.truth, q.table.sign())
  before = best_run(q)
  if before is not None:
    before["regret"] = judge(before["label"])["regret"]
  best = None if before is None else before["regret"]
  runs = []
  for i in range(k):
    a, _, s = suggest(q, i + 1)
    y = q.truth[s["label"]]
    record(q, a, y)
    q.chooser.tell(a, float(q.ref.norm(a, y)))
    r = judge(s["label"])
    best = r["regret"] if best is None else min(best, r["regret"])
    runs.append(dict(s, run=i + 1, value=r["value"], regret=r["regret"],
                     better_pct=r["better_pct"], best_regret=best))
  sign = q.table.sign()
  v = np.array(list(q.truth.values())) * sign
  out = dict(header(q, k), mode="play", reveal=os.path.abspath(reveal),
             left_out_no_reveal=q.left_out, best_before=before,
             revealed_best=float(v.min() * sign),
             revealed_worst=float(v.max() * sign), revealed_n=len(q.truth), runs=runs,
             evidence_kind=q.chooser.evidence_col,
             notes=["Each run is chosen after every earlier run's true value is revealed (a "
                    "back-test of the method on these results); regret is normalized over the "
                    "target configs of the reveal file and the CSV (0 = the best of them, 1 = "
                    "the worst)."])
  return out


def truth_of(spec: dict, table: Table, t: int, reveal: str, spec_path: str) -> dict:
  """label -> value at the target: the withheld rows (a CSV with the runs' columns, compiled with
  the spec's rules) and the CSV's own target runs."""
  base = os.path.dirname(os.path.abspath(spec_path))
  if not os.path.exists(reveal):
    raise Refusal(f"--reveal {reveal}: no such file")
  rv = sweep.compile_rows(spec, base, os.path.abspath(reveal))
  target = table.fidelity_names[t]
  truth = {}
  if target in rv.fidelity_names:
    g = rv.fidelity_index(target)
    labels = config_labels(rv)
    truth.update({labels[c]: float(rv.values_FxC[g, c]) for c in np.flatnonzero(rv.valid_FxC[g])})
  if not truth:
    raise Refusal(f"--reveal {reveal}: no rows at {target!r} (fidelities there: "
                  f"{list(rv.fidelity_names)[:8]}{' ...' if rv.num_fidelities > 8 else ''})")
  labels = config_labels(table)
  truth.update({labels[c]: float(table.values_FxC[t, c]) for c in np.flatnonzero(
      table.valid_FxC[t])})
  return truth


def judge_of(truth: dict, sign: float):
  """label -> dict(value, regret, better_pct) (None for a label without a value): regret
  (y - y*) / (y_worst - y*) over the values in `truth` (mirrored for max), clipped to [0, 1]."""
  v = np.array(list(truth.values())) * sign
  star, worst = v.min(), v.max()

  def judge(label):
    if label not in truth:
      return None
    y = truth[label] * sign
    return dict(value=truth[label], regret=float(np.clip((y - star) / max(worst - star, 1e-12),
                                                         0, 1)),
                better_pct=float(100 * np.mean(v < y)))
  return judge


def add_truth(out: dict, spec: dict, table: Table, t: int, reveal: str, spec_path: str) -> None:
  """Adds each suggestion's true value, regret and percentile from withheld target rows (a CSV
  with the runs' columns), over the target configs of the reveal file and the CSV together."""
  truth = truth_of(spec, table, t, reveal, spec_path)
  s = table.sign()
  judge = judge_of(truth, s)
  for sug in out["suggestions"]:
    sug["revealed"] = judge(sug["label"])
  if out["best_so_far"]:
    out["best_so_far"]["revealed"] = judge(out["best_so_far"]["label"])
  out["revealed_best"] = float(min(np.array(list(truth.values())) * s) * s)
  out["revealed_n"] = len(truth)


def _cfg(d: dict) -> str:
  return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in d.items())


def _known_lines(out: dict) -> list[str]:
  kn = out["known"]
  L = [f"Known: {kn['cheap_results']} cheap results (of {kn['cheap_results_available']}) at "
       f"{len(kn['cheap_fidelities'])} fidelities ({', '.join(kn['cheap_fidelities'])}); "
       f"{kn['target_runs']} runs at {out['target']} so far; {out['candidates']} candidate "
       f"configs ({out['candidates_from']})."]
  if kn["ignored_costlier_or_equal"]:
    L.append(f"Ignored: {kn['ignored_costlier_or_equal']} results at fidelities that cost as "
             "much as the target or more.")
  return L


def format_text(out: dict) -> str:
  if out.get("mode") == "play":
    return format_play(out)
  obj = out["objective"]
  L = [f"autollmr advisor: {out['table']}, target {out['target']} ({out['direction']} {obj}); "
       f"method: {out['method']}"] + _known_lines(out)
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


def format_play(out: dict) -> str:
  obj = out["objective"]
  L = [f"autollmr advisor, played against {out['reveal']}: {out['table']}, target "
       f"{out['target']} ({out['direction']} {obj}); method: {out['method']}"] + _known_lines(out)
  L.append(f"Revealed: {out['revealed_n']} target results; regret 0 = {obj} "
           f"{out['revealed_best']:.4g} (the best), 1 = {out['revealed_worst']:.4g} (the worst).")
  if out["left_out_no_reveal"]:
    L.append(f"Left out: {out['left_out_no_reveal']} candidate configs without a row in the "
             "reveal file (they cannot be scored).")
  b = out["best_before"]
  L.append(f"Before: best run at the target {_cfg(b['config'])} -> {obj} {b['value']:.4g} "
           f"(regret {b['regret']:.4f})" if b else "Before: no run at the target.")
  L += ["", f"{out['k']} run(s) at {out['target']}, each chosen after the earlier ones' results:"]
  for r in out["runs"]:
    L.append(f"{r['run']:>2}. {_cfg(r['config'])} -> {obj} {r['value']:.4g} (regret "
             f"{r['regret']:.4f}); best so far: regret {r['best_regret']:.4f}"
             + (f"; policy p = {r['policy_prob']:.2f}" if r["policy_prob"] is not None else ""))
  L += [""] + out["notes"]
  return "\n".join(L)


def _truth_txt(r) -> str:
  if not r:
    return ""
  return (f" [revealed: {r['value']:.4g}, regret {r['regret']:.4f}, {r['better_pct']:.1f}% of "
          "target configs better]")
