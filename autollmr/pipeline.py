"""The pipeline behind `python -m autollmr.main`: curation -> ... -> evaluation.

Each stage reads the config and the workdir and writes its output into the workdir; a stage whose
output already exists is skipped, so a crashed or interrupted run resumes where it stopped.
Multi-host (main.py --distributed): every host runs every stage (SFT and RL on the global mesh,
the rest replicated), the workdir is shared, only process 0 writes, and the hosts meet at a
barrier after each stage.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shlex
import sys
import time
import zlib

from absl import logging

from autollmr import errors
from autollmr import sharding
from autollmr.agent import checkpoints
from autollmr.agent import rl
from autollmr.agent import sft
from autollmr.agent import simulate
from autollmr.evaluation import agents
from autollmr.evaluation import plots
from autollmr.evaluation import pool as pool_lib
from autollmr.evaluation import report
from autollmr.evaluation import runs
from autollmr.evaluation import transcripts
from autollmr.gym import prior as prior_lib
from autollmr.gym import sources
from autollmr.gym import spec as spec_lib
from autollmr.gym import substudies
from autollmr.gym import tasks as tasks_lib
from autollmr.peers import registry
from autollmr.text import train as lm_train


def csv_list(s: str, cast=str) -> list:
  return [cast(x.strip()) for x in str(s).split(",") if x.strip()]


def spec_tables(config) -> dict:
  """{name: (absolute spec path, test_only)} of --config.tasks.specs and --config.tasks.test_specs
  (paths relative to the current directory; run() stores them absolute in config.json). Only the
  JSON is read here; a name taken by a built-in or another spec table is an error naming both."""
  out = {}
  for key, test_only in (("specs", False), ("test_specs", True)):
    for path in csv_list(config.tasks.get(key, "")):  # .get: workdirs made before these keys
      full = os.path.abspath(os.path.expanduser(path))
      if not os.path.isfile(full):
        raise errors.UserError(f"--config.tasks.{key}: spec file not found: {path} (paths are "
                               f"relative to the current directory, {os.getcwd()})")
      spec = spec_lib.load_spec(full)
      name = spec.get("name") if isinstance(spec, dict) else None
      if not isinstance(name, str) or not name:
        raise spec_lib.SpecError(f"spec {full}: spec key 'name' is missing or not a text")
      builtin = builtin_origin(name)
      if builtin:
        raise errors.UserError(f"spec {full} names its table {name!r}, the name of a built-in "
                               f"table ({builtin}); rename it (spec key 'name')")
      if name in out:
        raise errors.UserError(f"spec tables {out[name][0]} and {full} are both named {name!r}; "
                               "rename one (spec key 'name')")
      out[name] = (full, test_only)
  return out


def builtin_origin(name: str) -> str | None:
  """Where the built-in table called `name` is declared (None: no built-in table has it)."""
  base = name
  for suffix in sources.CONSTRAINED:
    if name.endswith(suffix):
      base = name[:-len(suffix)]
  if base in sources.REAL_TABLES:
    return os.path.join(sources.SPEC_DIR, base + ".json")
  if base in sources.GENERATED_TABLES or base.startswith("synthetic_"):
    return os.path.join(sources.REPO_DIR, "autollmr", "gym", "synthetic.py")
  return None


def absolute_spec_paths(config) -> None:
  """Spec paths made absolute, so a workdir's config.json means the same from any directory
  (checked first, so an error names the path as the user gave it)."""
  spec_tables(config)
  for key in ("specs", "test_specs"):
    paths = csv_list(config.tasks[key])
    config.tasks[key] = ",".join(os.path.abspath(os.path.expanduser(p)) for p in paths)


def table_names(config) -> list[str]:
  """The tables in use: --config.tasks.families, else every built-in table available here and
  every spec table."""
  raw = config.data_dir or None  # "none" forces the synthetic tables
  specs = spec_tables(config)
  available = sources.available_tables(raw) + list(specs)
  names = csv_list(config.tasks.families) or available
  unknown = [n for n in names if n not in available]
  if unknown:
    raise errors.UserError(
        f"--config.tasks.families names {unknown}, not available here; available: "
        f"{available} (data directory: {sources.find_data_dir(raw)})")
  return names


def load_table(config, name: str):
  """One table by name: a spec table of the config (through the cache) or a built-in one."""
  specs = spec_tables(config)
  if name in specs:
    return sources.load_spec_table(specs[name][0])
  return sources.load_table(name, config.data_dir or None)


def load_tables(config) -> dict:
  raw = config.data_dir or None  # "none" forces the synthetic tables; resolve it once, here
  data_dir = sources.find_data_dir(raw)
  names = table_names(config)
  if data_dir is None:
    print("autollmr: no data directory found: using the synthetic tables (and the semi-synthetic "
          "grpo table). Point --config.data_dir or $AUTOLLMR_DATA at a folder holding step-law/, "
          "hw-gpt-bench/, admire-ift-runs/ and regmix/ to use the real ones.")
  else:
    print(f"autollmr: data directory {data_dir}")
  for n, (path, test_only) in spec_tables(config).items():
    print(f"autollmr: spec table {n} ({path}){' (test only)' if test_only else ''}"
          + ("" if n in names else ": not in --config.tasks.families, not used"))
  return {n: load_table(config, n) for n in names}


def parse_targets(config, names) -> dict:
  """--config.tasks.targets=TABLE=FIDELITY,... -> {table: [fidelity, ...]} over the tables in use
  `names`. A fidelity name may hold commas and '=' (Step Law's 'N=1.07B,D=20B'): a comma starts a
  new entry only where a table name and '=' follow."""
  out, last = {}, None
  for piece in str(config.tasks.get("targets", "")).split(","):
    head, eq, rest = piece.strip().partition("=")
    if eq and head in names:
      last = (head, rest.strip())
      out.setdefault(head, []).append(last[1])
    elif last is not None and piece.strip():
      fid = out[last[0]].pop() + "," + piece.strip()
      out[last[0]].append(fid)
      last = (last[0], fid)
    elif piece.strip():
      raise errors.UserError(
          f"--config.tasks.targets: {piece.strip()!r} is not TABLE=FIDELITY with a table in use; "
          f"tables in use: {', '.join(names)}")
  return out


def curate_all(config, tables) -> dict:
  kw = dict(budgets=tuple(csv_list(config.tasks.budgets, int)), test_rho=config.tasks.test_rho,
            train_rhos=tuple(csv_list(config.tasks.train_rhos, float)),
            extra_turns=config.tasks.extra_turns)
  targets = parse_targets(config, table_names(config)) if config.tasks.get("targets") else {}
  specs = spec_tables(config)
  held_out = csv_list(config.tasks.held_out)
  unknown = [n for n in held_out if n not in tables]
  if unknown:
    raise errors.UserError(f"--config.tasks.held_out names {unknown}, not among the tables in "
                           f"use {sorted(tables)}")
  splits = {}
  for name, t in tables.items():
    test_only = name in specs and specs[name][1]
    try:
      splits[name] = tasks_lib.curate(t, targets=tuple(targets.get(name, ())),
                                      test_only=test_only, every_level=name in held_out, **kw)
    except errors.UserError as e:
      raise errors.UserError(f"--config.tasks.targets: {e}") from None
    if name in specs and not splits[name]["test"]:
      raise errors.UserError(
          f"spec table {name!r} ({specs[name][0]}) gives no test task: it needs a fidelity above "
          f"a lower, cheaper one (levels by log10_N, else one per fidelity: "
          f"{list(t.fidelity_names)})")
    if held_out and name not in held_out:  # leave-one-family-out: the others only train
      splits[name]["test"] = []
  held = csv_list(config.tasks.val_families)
  unknown = [n for n in held if n not in splits]
  if unknown:
    raise errors.UserError(
        f"--config.tasks.val_families names {unknown}, not among the tables in use "
        f"{sorted(splits)}")
  for n in held:  # a whole family as validation: its training-level tasks are not trained on
    s = splits[n]
    s["val"] = s["val"] + [dataclasses.replace(t, split="val") for t in s["train"]]
    s["train"] = []
  return splits


def build_tables(config) -> tuple[dict, dict]:
  """(tables, splits) as every stage and every command that reads a workdir's config.json sees
  them: the tables in use (built-in and spec tables), curated, and the prior's drawn tables
  (training and validation only; `prior.only`: the real tables then train nothing)."""
  tables = load_tables(config)
  splits = curate_all(config, tables)
  if config.prior.only:
    splits = {n: dict(s, train=[], val=[]) for n, s in splits.items()}
  drawn, drawn_splits = prior_lib.tables_and_splits(
      config.prior, tuple(csv_list(config.tasks.budgets, int)), int(config.tasks.extra_turns))
  return {**tables, **drawn}, {**splits, **drawn_splits}


def stage_curate(config, workdir, tables, splits):
  path = os.path.join(workdir, "curation", "tasks.json")
  if sharding.agree(os.path.exists(path)):
    print(f"[curate] exists: {path}")
    return
  out = {}
  print("[curate] tasks per table (train / val / test):")
  drawn = [n for n in splits if prior_lib.is_drawn(n)]
  if drawn:
    count = lambda k: sum(len(splits[n][k]) for n in drawn)
    print(f"  {len(drawn)} drawn tables (gym/prior.py): {count('train')} / {count('val')} / 0")
  for name, s in splits.items():
    out[name] = {k: [t.__dict__ for t in v] for k, v in s.items()}
    if prior_lib.is_drawn(name):
      continue
    tg = lambda k: sorted({t.target for t in s[k]})
    print(f"  {name:<24} {len(s['train']):>4} / {len(s['val']):>3} / {len(s['test']):>3}   "
          f"test targets: {', '.join(tg('test'))}")
    leak = tasks_lib.check_no_leak(tables[name], s)
    if leak:
      raise RuntimeError(f"[curate] test values reach training on {name}: {leak}")
  if sharding.is_main():
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
      json.dump(out, f, indent=1)
    print(f"[curate] wrote {path}")


def eval_methods(config) -> list[str]:
  """The peers named by --config.eval.methods that can run here (unknown names are an error)."""
  methods = csv_list(config.eval.methods)
  unknown = [m for m in methods if m not in registry.PEERS
             and m not in registry.OPTIONAL_PEERS]
  if unknown:
    raise errors.UserError(f"--config.eval.methods names unknown method(s) {unknown}; peers: "
                           f"{sorted(registry.PEERS)}")
  missing = [m for m in methods if m not in registry.PEERS]
  if missing:
    print(f"[eval] skipping {missing}: install the optional extra (pip install -e '.[peers]')")
  return [m for m in methods if m in registry.PEERS]


def regime(config) -> str:
  """The evidence regime the eval stage plays: sparse (eval.sparse_n), online (test_rho = 0)
  or full (every cheap result known; any other test_rho is a partial reveal, named by it)."""
  if int(config.eval.sparse_n):
    return "sparse"
  rho = float(config.tasks.test_rho)
  return "online" if rho == 0 else "full" if rho == 1 else f"rho={rho:g}"


def results_dir(config) -> str:
  """Where the eval stage writes, relative to the workdir: results/, results/<split>/, then
  <regime>/ for any regime but full, and .../sub_studies/ under eval.sub_studies."""
  sub = ("results" if config.eval.split == "standard"
         else os.path.join("results", config.eval.split))
  if regime(config) != "full":
    return os.path.join(sub, regime(config).replace("=", "_"))
  return os.path.join(sub, "sub_studies") if int(config.eval.sub_studies) else sub


def stage_eval(config, workdir, tables, splits, agents=None):
  methods = eval_methods(config)  # checked before anything is skipped or run
  n_sub = int(config.eval.sub_studies)
  sub = results_dir(config)
  if config.eval.split == "val":  # model selection against the peers: the validation tasks play
    # the test tasks' part (results/val/); the test tasks are not played
    splits = {n: dict(s, test=s["val"], val=[]) for n, s in splits.items()}
  out_dir = os.path.join(workdir, sub)
  board = os.path.join(out_dir, "leaderboard.json")
  if sharding.agree(os.path.exists(board)):
    print(f"[eval] exists: {board}")
    with open(os.path.join(out_dir, "episodes.jsonl")) as f:
      records = [json.loads(line) for line in f]
    print(report.summary_text(records))
    return
  seeds = list(range(config.eval.seeds))
  t0 = time.time()
  with pool_lib.peer_pool(pool_lib.eval_workers(config)) as pool:
    if int(config.eval.sparse_n):
      records = eval_sparse(config, workdir, tables, splits, methods, seeds, pool)
    elif n_sub:
      records = eval_sub_studies(config, workdir, tables, splits, methods, seeds, n_sub, pool)
    else:
      records = eval_all(config, workdir, tables, splits, methods, seeds, pool)
  command = "python -m autollmr.main " + " ".join(shlex.quote(a) for a in sys.argv[1:])
  # every host opens the checkpoints (orbax's managers meet across hosts); process 0 writes
  draws = n_sub or int(config.eval.sparse_n)
  choosers = [] if draws else transcripts.eval_choosers(config, workdir, methods)
  if not sharding.is_main():
    return
  report.write_results(records, out_dir, command)
  print(f"[eval] {len(records)} episodes in {time.time() - t0:.0f}s; wrote {out_dir}/"
        "{leaderboard.json,leaderboard.md,summary.md,regret_vs_budget.png,cost_to_target.md}")
  if not draws:
    t1 = time.time()  # what a researcher reads: a few episodes as Markdown, curves, landscapes
    queries = transcripts.write_eval_transcripts(config, tables, splits, out_dir, choosers)
    pngs = plots.write_eval_plots(workdir, tables, splits, out_dir, queries)
    print(f"[eval] {len(queries)} transcripts in {out_dir}/transcripts/ and {len(pngs)} plots "
          f"({', '.join(os.path.basename(p) for p in pngs)}) in {time.time() - t1:.0f}s")
  print(report.summary_text(records))


def peer_jobs(config, tables, splits, methods, stand_in=None) -> list:
  """[(method, [(table, test tasks, learned-peer sources)])]: every applicable peer on every
  table's "test" tasks (runs.run_peer_job). stand_in: {name: table} the learned peers train
  on in place of the played table (sub-studies train on the whole tables, as the agent did)."""
  jobs = []
  held_out = csv_list(config.tasks.held_out)
  for n, s in splits.items():
    if not s["test"]:
      continue
    table = tables[n]
    if table.name in held_out:  # lofo: the learned peers meta-train on what the agent trains
      # on, the other families' training tasks
      src = dict(sources=[(tables[m], r["train"] + r["val"]) for m, r in splits.items()
                          if tables[m].name not in held_out and r["train"] + r["val"]
                          and not prior_lib.is_drawn(m)])
      jobs += [(m, [(table, s["test"], src)]) for m in methods if registry.applicable(m, table)]
      continue
    # own training tasks, as curated (chosen targets, test-only tables: none); a table without
    # any borrows its family's (e.g. regmix); only what this table can use is shipped
    own = s["train"] + s["val"]
    borrowed = [(tables[m], r["train"] + r["val"]) for m, r in splits.items()
                if m != n and tables[m].family == table.family and r["train"] + r["val"]
                and not prior_lib.is_drawn(m)]  # the peers learn from real tables only
    src = dict(sources=[((stand_in or {}).get(n, table), own)] if own else borrowed,
               stand_in={n: stand_in[n]} if stand_in and n in stand_in else None)
    jobs += [(m, [(table, s["test"], src)]) for m in methods
             if registry.applicable(m, table)]
  return jobs


def eval_all(config, workdir, tables, splits, methods, seeds, pool=None) -> list:
  """Every peer and every trained agent on every table's "test" tasks (records). The peers run
  in `pool`'s processes (pool_lib.peer_pool), then this one plays the agents (both at once would
  fight over the cores)."""
  work = [(tables[n], s["test"]) for n, s in splits.items() if s["test"]]
  bar = runs.progress(runs.count_peer_episodes(work, methods, seeds), "[eval] peers")
  futures = runs.submit_peer_jobs(
      peer_jobs(config, tables, splits, methods), seeds, config, pool, bar)
  records = [r for f in futures for part in f.result() for r in part]
  bar.close()
  agents = agent_records(config, workdir, tables, splits)
  return records + agents


def eval_sub_studies(config, workdir, tables, splits, methods, seeds, n_sub: int,
                     pool=None) -> list:
  """eval_all on `n_sub` random sub-studies of every evaluated table (substudies.sub_study_table:
  each config dropped with probability eval.sub_drop, the same draws for every method and every
  training seed). A record's task becomes "<target>~<i>", so a family's cell is the mean over its
  targets x sub-studies. The learned peers train on the whole tables, as the agent did; a job is
  one peer on one table's n_sub sub-studies, so its fits are made once."""
  names = [n for n, s in splits.items() if s["test"]]
  work = [(tables[n], splits[n]["test"]) for n in names]
  bar = runs.progress(n_sub * runs.count_peer_episodes(work, methods, seeds),
                      f"[eval] peers x {n_sub} sub-studies")
  subs = []
  for i in range(n_sub):
    sub_tables = dict(tables)
    for n in names:
      sub_tables[n] = substudies.sub_study_table(tables[n], float(config.eval.sub_drop),
                                                 zlib.crc32(f"{n}~{i}".encode()))
    subs.append(sub_tables)
  per_sub = [peer_jobs(config, t, splits, methods, stand_in={n: tables[n] for n in names})
             for t in subs]  # the same (method, table) order in every sub-study
  keys = [[(m, parts[0][0].name) for m, parts in jobs_i] for jobs_i in per_sub]
  assert all(k == keys[0] for k in keys), keys
  jobs = [(job[0], [p for jobs_i in per_sub for p in jobs_i[j][1]])
          for j, job in enumerate(per_sub[0])]
  futures = runs.submit_peer_jobs(jobs, seeds, config, pool, bar)
  peers = [f.result() for f in futures]
  agents = [agent_records(config, workdir, t, splits) for t in subs]
  records = []
  for i in range(n_sub):
    recs = [r for part in peers for r in part[i]] + agents[i]
    for r in recs:
      r["task"] = f"{r['task']}~{i}"
    records += recs
  bar.close()
  return records


def eval_sparse(config, workdir, tables, splits, methods, seeds, pool=None) -> list:
  """The sparse regime: each test target on `eval.designs` designs where each of its visible
  fidelities keeps at most eval.sparse_n results (substudies.sparse_table; one design per target
  and draw, the same for every method). A design is a table view per target, so a target that is
  also visible to a higher one (every_level) keeps all its configs as a target. A record's task
  becomes "<target>~<draw>"; the learned peers train as in the full regime (their sources)."""
  n, draws = int(config.eval.sparse_n), int(config.eval.designs)
  records = []
  for i in range(draws):
    view_tables, view_splits, stand_in = {}, {}, {}
    for name, s in splits.items():
      for target in sorted({t.target for t in s["test"]}):
        tasks = [t for t in s["test"] if t.target == target]
        key = f"{name}|{target}"
        view_tables[key] = substudies.sparse_table(
            tables[name], tasks[0].visible, n, zlib.crc32(f"{key}~{i}".encode()))
        view_splits[key] = dict(train=s["train"], val=s["val"], test=tasks)
        stand_in[key] = tables[name]
    for name, s in splits.items():  # training-only tables lend the learned peers their tasks
      if not s["test"] and s["train"] + s["val"]:
        view_tables[name], view_splits[name] = tables[name], s
    work = [(view_tables[k], s["test"]) for k, s in view_splits.items() if s["test"]]
    bar = runs.progress(runs.count_peer_episodes(work, methods, seeds),
                        f"[eval] sparse design {i + 1}/{draws}")
    jobs = peer_jobs(config, view_tables, view_splits, methods, stand_in=stand_in)
    futures = runs.submit_peer_jobs(jobs, seeds, config, pool, bar)
    recs = [r for f in futures for part in f.result() for r in part]
    recs += agent_records(config, workdir, view_tables, view_splits)
    bar.close()
    for r in recs:
      r["task"] = f"{r['task']}~{i}"
    records += recs
  return records


def agent_records(config, workdir, tables, splits) -> list:
  """Records of the trained agents in workdir (SFT, RL) on the test tasks ([] when none)."""
  records = []
  for method, load in ((agents.METHOD, None), (agents.RL_METHOD, checkpoints.load_rl_policy)):
    model = load(config, workdir) if load else None
    if load and model is None or not load and not checkpoints.has_sft_checkpoint(workdir):
      continue
    t0 = time.time()
    recs = agents.eval_records(config, workdir, tables, splits, method=method, model=model)
    print(f"[eval] {method}: {len(recs)} episodes in {time.time() - t0:.0f}s")
    records += recs
  if os.path.isdir(os.path.join(workdir, "lm")):  # the text policy, on the same board
    records += lm_train.eval_records(config, workdir, tables, splits)
  return records


def stage_simulate(config, workdir, tables, splits):
  path = os.path.join(workdir, "sim", "summary.json")
  if sharding.agree(os.path.exists(path)):
    print(f"[simulate] exists: {path}")
    return
  s = simulate.run(config, workdir, tables, splits)
  if sharding.is_main():  # only process 0 writes the records
    print(f"[simulate] {s['n_steps']} steps from {s['n_episodes']} kept episodes "
          f"({s['n_tasks']} train tasks x {s['n_episodes'] // max(s['n_tasks'], 1)} seeds, "
          f"best of {s['rollouts']}), "
          f"{s['bytes'] / 1e6:.1f} MB, {s['seconds']:.0f}s; mean teacher regret "
          f"{s['teacher_regret_mean']:.4f} (one rollout: {s['rollout_regret_mean']:.4f}); "
          f"wrote {os.path.dirname(path)}/")


def stage_sft(config, workdir, tables, splits):
  if config.policy == "lm":  # the text policy (text/train.py)
    return lm_train.stage_sft(config, workdir, tables, splits)
  if sharding.agree(checkpoints.sft_done(config, workdir)):
    print(f"[sft] exists: {os.path.join(workdir, 'sft', 'ckpt')}")
    return
  t0 = time.time()
  out = sft.train(config, workdir, tables, splits)
  print(f"[sft] {out['step']} steps in {time.time() - t0:.0f}s; last: "
        + ", ".join(f"{k}={v:.4g}" for k, v in out["last"].items()
                    if isinstance(v, float)))


def stage_rl(config, workdir, tables, splits):
  if config.policy == "lm":
    return lm_train.stage_rl(config, workdir, tables, splits)
  if sharding.agree(checkpoints.rl_done(config, workdir)):
    print(f"[rl] exists: {os.path.join(workdir, 'rl', 'ckpt')}")
    return
  t0 = time.time()
  out = rl.train(config, workdir, tables, splits)
  rate = out["policy_env_steps_per_s"]
  print(f"[rl] {out['step']} updates in {time.time() - t0:.0f}s"
        + (f", {rate:.0f} policy+env steps/s" if rate else "") + "; last: "
        + ", ".join(f"{k}={v:.4g}" for k, v in out["last"].items() if isinstance(v, float)))
  best = checkpoints.read_best(workdir)
  if best is not None and config.rl.select_on_val:
    print(f"[rl] evaluated policy: step {best['step']} (lowest validation criterion "
          f"{best['val_select']:.4f}; step 0 = the starting policy)")


STAGES = {"curate": stage_curate, "simulate": stage_simulate, "sft": stage_sft,
          "rl": stage_rl, "eval": stage_eval}


def run(config, workdir: str):
  os.makedirs(workdir, exist_ok=True)
  stages = csv_list(config.stages)
  unknown = [s for s in stages if s not in STAGES]
  if unknown:
    raise errors.UserError(
        f"--config.stages names unknown stage(s) {unknown}; stages: {list(STAGES)}")
  if config.eval.split not in ("standard", "val"):
    raise errors.UserError("--config.eval.split must be standard or val, got "
                           f"{config.eval.split!r}")
  if int(config.eval.sub_studies) < 0:
    raise errors.UserError(f"--config.eval.sub_studies must be >= 0, got {config.eval.sub_studies}")
  if "eval" in stages:
    eval_methods(config)
  absolute_spec_paths(config)
  if sharding.is_main():
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json(indent=1))
  tables, splits = build_tables(config)
  for s in stages:
    logging.info("stage %s", s)
    STAGES[s](config, workdir, tables, splits)
    sharding.sync(f"autollmr stage {s}")  # process 0's files are there for every host
  print(f"autollmr: done; everything is under {os.path.abspath(workdir)}")
