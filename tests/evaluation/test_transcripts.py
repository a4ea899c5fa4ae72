"""Transcripts: a replayed episode is the evaluated one, its Markdown says what happened, and the
kernel prediction and saliency behave as documented. (The eval stage's writing of transcripts is
covered by the tiny pipelines in test_evaluate.py and test_rl.py.)"""
import numpy as np

from autollmr.agent import model as model_lib
from autollmr.agent import play as play_lib
from autollmr.evaluation import choosers
from autollmr.evaluation import runs
from autollmr.evaluation import transcripts
from autollmr.gym import table as table_lib
from autollmr.gym import tasks as tasks_lib
from autollmr.gym.reference import ReferenceEnv
from autollmr.gym.table import Table
from autollmr.peers import base as peer_base
from autollmr.peers import episode
from autollmr.peers import registry
from configs import sft as sft_config


def _table(C=40, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(C, 2)).astype(np.float32)
  v = np.stack([(x ** 2).sum(1) + 0.3 * rng.normal(size=C) + 2.0 * f for f in range(3)])
  return Table(
      name="bowl", family="other", provenance="synthetic", objective="loss", direction="min",
      fidelity_names=("s", "m", "l"), config_feature_names=("a", "b"),
      fidelity_feature_names=("log10_N",), config_features_CxD=x,
      fidelity_features_FxG=np.array([[7.0], [8.0], [9.0]], np.float32),
      values_FxC=v.astype(np.float32), valid_FxC=np.ones((3, C), bool),
      flagged_FxC=np.zeros((3, C), bool), cost_F=np.array([1.0, 10.0, 100.0]), cost_unit="u")


def _setup(budgets=(3,)):
  table = _table()
  test = tasks_lib.curate(table, budgets=budgets)["test"]
  cfg = sft_config.get_config("tiny")
  params, sizes = runs.build_eval_params(table, test, cfg)
  return table, test, cfg, params, sizes


def test_peer_transcript_replays_the_evaluated_episode():
  table, test, cfg, params, sizes = _setup()
  peer = lambda ctx: choosers.PeerChooser(registry.PEERS["trend"](ctx, 0), ctx.cand_exists_A)
  ep = transcripts.record_episode(table, test[0], params, sizes, 0, 0, "trend", peer)
  ctx = peer_base.make_context(table, test[0], params, 0)
  ref = ReferenceEnv(params, sizes, auto_reset=False)
  want = episode.run_episode(registry.PEERS["trend"], ref, ctx, 0, 0)
  assert [s["action"] for s in ep["steps"]] == want["actions"]
  assert np.isclose(ep["regret"], want["regret"]) and ep["recommendation"] == want["recommendation"]
  md = transcripts.render(ep, table)
  assert f"regret {want['regret']:.4f}" in md and "## Queries" in md and "kernel weight" in md
  query_rows = [l for l in md.split("## Queries")[1].split("## Evidence")[0].splitlines()
                if l.startswith("| ") and l[2].isdigit()]
  assert len(query_rows) == len(want["actions"])
  for s in ep["steps"]:  # observed = the table's value; evidence = known results, weights sum <= 1
    assert np.isclose(s["obs_value"], table.values_FxC[table.fidelity_index(s["fidelity"]),
                                                       s["config"]])
    assert s["evidence"] and sum(e["weight"] for e in s["evidence"]) <= 1 + 1e-6
  q = transcripts.queries_record(ep, table)
  assert len(q["queries"]) == len(ep["steps"]) and len(q["queries"][0]["features"]) == 2


def test_agent_transcript_matches_the_jitted_play():
  """The greedy policy replayed one decision at a time (padded inputs) takes the jitted play's
  actions; each decision's evidence carries a finite saliency over known results."""
  table, test, cfg, params, sizes = _setup(budgets=(2, 3))
  model = model_lib.make_policy(cfg.model, seed=3)
  family_N = np.zeros(len(test), np.int32) + table_lib.family_id(table.family)
  played = play_lib.play(model, params, sizes, np.arange(len(test)), np.zeros(len(test)), family_N)
  for i, task in enumerate(test):
    ep = transcripts.record_episode(
        table, task, params, sizes, i, 0, "policy", lambda ctx: choosers.AgentChooser(
            model, ctx.cand_exists_A, table_lib.family_id(table.family), task.max_turns))
    acts = [s["action"] for s in ep["steps"]]
    assert acts == played["actions"][i][:len(acts)].tolist()
    assert np.isclose(ep["regret"], played["regret"][i])
    for s in ep["steps"]:
      assert 0 < s["prob"] <= 1 and s["evidence"]
      assert all(np.isfinite(e["weight"]) and e["fidelity"] in ("s", "m", "l")
                 for e in s["evidence"])
    assert "saliency" in transcripts.render(ep, table)


def test_kernel_prediction_reads_the_nearest_known_result():
  table, test, cfg, params, sizes = _setup()
  ref = ReferenceEnv(params, sizes, auto_reset=False)
  ref.reset(0, 0)
  view = ref.expand()
  exists = np.asarray(params.cand_exists_NxA[0])
  fid, cfgs = np.asarray(params.cand_fid_NxA[0]), np.asarray(params.cand_config_NxA[0])
  a = int(np.flatnonzero(exists & (fid == 2))[0])  # a target candidate
  b = int(np.flatnonzero(exists & (fid == 1) & (cfgs == cfgs[a]))[0])  # its config, one below
  w = choosers.kernel_weights(view, exists, [a])[0]
  assert np.isclose(w.sum(), 1) and np.all(w[~np.asarray(view["known_A"])] == 0)
  assert np.argmax(w) == b  # the same config at the nearest fidelity weighs most
  mu, sd = choosers.kernel_predict(view, exists, [a])
  assert abs(mu[0] - view["value_A"][b]) < 0.5 and sd[0] >= 0
  y = table.values_FxC[1, cfgs[b]]  # the score <-> value round trip at a visible fidelity
  assert np.isclose(choosers.to_raw(ref.p, 0, 1, ref.norm(b, y)), y, rtol=1e-4)


def test_command_line_renders_any_test_episode(tmp_path, run_command, one_error_line):
  c = sft_config.get_config("tiny")
  c.data_dir = "none"
  (tmp_path / "config.json").write_text(c.to_json())
  r = run_command("autollmr.transcripts", f"--workdir={tmp_path}", "--table=grpo",
                  "--method=trend", "--budget=1")
  assert r.returncode == 0, r.stderr
  assert r.stdout.startswith("# trend on grpo: target Qwen2.5-32B, budget K=1")
  assert "regret" in r.stdout
  assert "config.json" in one_error_line(run_command(
      "autollmr.transcripts", f"--workdir={tmp_path / 'nope'}", "--table=grpo"))


def test_play_in_chunks_is_the_same_as_one_batch():
  """play_lib.play's max_batch bounds memory only: greedy episodes in padded chunks of 3 give the
  one-batch arrays (regret, actions, anytime regret)."""
  table, test, cfg, params, sizes = _setup(budgets=(1, 2, 3))
  model = model_lib.make_policy(cfg.model, seed=1)
  task_E = np.repeat(np.arange(len(test)), 3)
  seed_E = np.tile(np.arange(3), len(test))
  one = play_lib.play(model, params, sizes, task_E, seed_E)
  chunked = play_lib.play(model, params, sizes, task_E, seed_E, max_batch=3)
  assert len(task_E) > 4  # several chunks of 3 (and of 4 below)
  for k in ("regret", "actions", "n_turns", "cost_spent"):
    np.testing.assert_array_equal(one[k], chunked[k], err_msg=k)
  np.testing.assert_array_equal(np.isnan(one["anytime_regret"]),
                                np.isnan(chunked["anytime_regret"]))
  odd = play_lib.play(model, params, sizes, task_E[:-1], seed_E[:-1], max_batch=4)  # padded chunk
  np.testing.assert_array_equal(odd["regret"], one["regret"][:-1])
