"""Greedy decisions do not depend on the batch: one task played alone, among 64 episodes of other
tables and seeds (one union EnvParams), and step by step by the advisor's AgentChooser (batch one,
padded candidates) takes the same actions, on a table where every config is there twice with the
same values (exact ties), by the fixed rule play_lib.greedy_action (the lowest index within
TIE_TOL of the best).

On CPU the three ways compute the twins' logits bit-equal and differ elsewhere by <= ~1e-6, so a
plain argmax passes the unperturbed check too; the batch's effect is therefore also reproduced
on purpose: ShapeNoise moves the logits by up to NOISE in a pattern set by the batch shape (B, A),
as XLA's shape-dependent summation orders do. A plain argmax then follows the noise at the ties
(10 of these 12 episodes differ between alone and batched, 4 between the chooser and alone); the
rule does not. (No rule can be exact: a candidate whose gap to the best is within the noise of
TIE_TOL still flips, as one within the noise of 0 flips a plain argmax; these seeds have none.)
"""
import dataclasses

from flax import nnx
import jax.numpy as jnp
import numpy as np
import pytest

from autollmr.agent import bank
from autollmr.agent import features
from autollmr.agent import model as model_lib
from autollmr.agent import play as play_lib
from autollmr.evaluation import choosers
from autollmr.gym import build
from autollmr.gym import env as env_lib
from autollmr.gym import table as table_lib
from autollmr.gym import tasks as tasks_lib
from autollmr.gym.reference import ReferenceEnv
from autollmr.gym.table import Table
from configs import sft as sft_config

# 10x the differences measured between batch sizes for this tiny untrained model (~1e-6; the
# trained 3-member ensemble's 2.7e-5 are at |log p| ~ 12, this model's at ~4)
NOISE = 1e-5
C = 12  # distinct configs of the tie table; each is there twice


def bowl(name, x_CxD, seed):
  rng = np.random.default_rng(seed)
  C_ = len(x_CxD)
  v = np.stack([(x_CxD ** 2).sum(1) + 0.3 * rng.normal(size=C_) + 2.0 * f for f in range(3)])
  return Table(
      name=name, family="other", provenance="synthetic", objective="loss", direction="min",
      fidelity_names=("s", "m", "l"), config_feature_names=tuple("abc"[:x_CxD.shape[1]]),
      fidelity_feature_names=("log10_N",), config_features_CxD=x_CxD.astype(np.float32),
      fidelity_features_FxG=np.array([[7.0], [8.0], [9.0]], np.float32),
      values_FxC=v.astype(np.float32), valid_FxC=np.ones((3, C_), bool),
      flagged_FxC=np.zeros((3, C_), bool), cost_F=np.array([1.0, 10.0, 100.0]), cost_unit="u")


def twins_table():
  """Config c and c + C: the same features and the same value at every fidelity."""
  t = bowl("twins", np.random.default_rng(0).normal(size=(C, 2)), 0)
  dup = lambda x, axis: np.concatenate([x, x], axis)
  return dataclasses.replace(t, config_features_CxD=dup(t.config_features_CxD, 0),
                             values_FxC=dup(t.values_FxC, 1), valid_FxC=dup(t.valid_FxC, 1),
                             flagged_FxC=dup(t.flagged_FxC, 1))


class ShapeNoise(nnx.Module):
  """The policy with its allowed logits moved by up to `eps` in a pattern fixed by the batch
  shape (B, A): the last-bit differences between batch sizes, made large and deterministic."""

  def __init__(self, model, eps: float):
    self.model, self.eps = model, eps
    self.d_max, self.g_max, self.max_keys = model.d_max, model.g_max, model.max_keys

  def __call__(self, view, max_keys=None):
    logits_BxA, value_B = self.model(view, max_keys)
    B, A = logits_BxA.shape
    u_A = jnp.sin(12.9898 * jnp.arange(A) + 78.233 * B + 3.7 * A)
    allowed_BxA = logits_BxA > features.NEG / 2
    return jnp.where(allowed_BxA, logits_BxA + self.eps * u_A, logits_BxA), value_B


@pytest.fixture(scope="module")
def setup():
  cfg = sft_config.get_config("tiny")
  twins = twins_table()
  other = bowl("other", np.random.default_rng(1).normal(size=(40, 3)), 1)
  test = tasks_lib.curate(twins, budgets=(1, 2, 3))["test"]
  other_test = tasks_lib.curate(other, budgets=(1, 2))["test"]
  make = lambda t, ts, **kw: build.make_params(
      t, ts, max_cheap_rows=cfg.env.max_cheap_rows, max_target_configs=cfg.env.max_target_configs,
      **kw)
  alone, alone_sizes = make(twins, test)  # the task's own table: what the advisor builds
  A = max(alone_sizes.num_candidates, make(other, other_test)[1].num_candidates) + 8
  T = alone_sizes.max_turns
  union = bank.union_params(
      [make(twins, test, pad_to=A, pad_turns_to=T)[0],
       make(other, other_test, pad_to=A, pad_turns_to=T)[0]],
      cfg.model.max_config_features, cfg.model.max_fidelity_features, 0.1, 0.0)
  fam = table_lib.family_id("other")
  return dict(cfg=cfg, test=test, n_other=len(other_test), alone=alone, sizes=alone_sizes,
              union=union, union_sizes=env_lib.EnvSizes(A, T), fam=fam)


def test_candidate_order_is_a_function_of_the_task(setup):
  """"Lowest index" is a fixed rule only if a task's candidates come in the same order however it
  is batched: the same (config, fidelity) list alone and in the union, padding after it."""
  s = setup
  n = s["sizes"].num_candidates
  for k in ("cand_config_NxA", "cand_fid_NxA", "cand_exists_NxA"):
    a, u = np.asarray(getattr(s["alone"], k)), np.asarray(getattr(s["union"], k))
    np.testing.assert_array_equal(u[:len(s["test"]), :n], a)
  assert not np.asarray(s["union"].cand_exists_NxA)[:len(s["test"]), n:].any()
  # the twins are both candidates at the target, the lower config first
  t0 = int(s["alone"].target_N[0])
  cfg_A = np.asarray(s["alone"].cand_config_NxA[0])[np.asarray(s["alone"].cand_fid_NxA[0]) == t0]
  assert set(cfg_A) == set(range(2 * C)) and np.all(np.diff(cfg_A) > 0)


def chooser_actions(model, s, task: int, seed: int) -> list[int]:
  """The episode as the advisor / transcripts play it: AgentChooser on the reference env."""
  ref = ReferenceEnv(s["alone"], s["sizes"], auto_reset=False)
  ref.reset(task, seed)
  view = ref.expand()
  chooser = choosers.AgentChooser(model, np.asarray(s["alone"].cand_exists_NxA[task]), s["fam"],
                                  s["test"][task].max_turns)
  acts, done = [], False
  while not done:
    acts.append(chooser.act(view))
    _, _, term, trunc, _ = ref.step(acts[-1])
    done, view = term or trunc, ref.expand()
  return acts


@pytest.mark.parametrize("eps", [0.0, NOISE], ids=["as_computed", "shape_noise"])
def test_same_actions_alone_in_a_batch_of_65_and_step_by_step(setup, eps):
  s = setup
  rng = np.random.default_rng(0)
  n_test = len(s["test"])
  fam_alone = np.full(n_test, s["fam"], np.int32)
  fam_union = np.full(n_test + s["n_other"], s["fam"], np.int32)
  first_configs = []
  mcfg = s["cfg"].model.copy_and_resolve_references()
  mcfg.members = 2 if eps else 1  # under noise the ensemble: its averaged log-probabilities
  for mseed in (0, 1):
    model = model_lib.make_policy(mcfg, seed=mseed)
    model = ShapeNoise(model, eps) if eps else model
    for task in range(n_test):
      for seed in (0, 1):
        alone = play_lib.play(model, s["alone"], s["sizes"], [task], [seed],
                              fam_alone)["actions"][0]
        task_B = np.concatenate([[task], n_test + rng.integers(0, s["n_other"], 64)])
        seed_B = np.concatenate([[seed], rng.integers(0, 1000, 64)])
        batched = play_lib.play(model, s["union"], s["union_sizes"], task_B, seed_B,
                                fam_union)["actions"][0]
        played = alone[alone >= 0].tolist()
        assert played == batched[batched >= 0].tolist(), (mseed, task, seed, alone, batched)
        assert chooser_actions(model, s, task, seed) == played, (mseed, task, seed)
        first_configs.append(int(s["alone"].cand_config_NxA[task, played[0]]))
  # Every first pick is an exact tie (rho = 1: only target configs are open, each twice); the rule
  # takes the lower copy, whatever the noise.
  assert all(c < C for c in first_configs), first_configs


def test_greedy_action_rule():
  tol = play_lib.TIE_TOL
  lg = jnp.asarray([[0.0, 1.0, 1.0, 0.5],  # exact tie: the lower index
                    [0.0, 1.0 - 0.5 * tol, 1.0, 0.5],  # within tol of the best: the lower index
                    [0.0, 1.0 - 2 * tol, 1.0, 0.5],  # a real gap: the best
                    [features.NEG, 0.3, features.NEG, 0.3]])  # masked entries never count
  np.testing.assert_array_equal(np.asarray(play_lib.greedy_action(lg)), [1, 1, 2, 1])
