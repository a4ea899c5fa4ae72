"""`python -m autollmr.ablate` on the tiny config."""
import collections
import json
import os
import subprocess
import sys

from autollmr.evaluation import stats

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_ablate_tiny_one_training_seed(tmp_path):
  """`python -m autollmr.ablate --train_seeds=1` on the tiny config: the three runs land in
  <run>_seed1, distillation + RL starts from the distillation run's SFT, every peer's episodes
  appear once, and the per-seed row is the run's own agent."""
  env = dict(os.environ, AUTOLLMR_DATA="none", AUTOLLMR_NO_PROGRESS="1")
  r = subprocess.run([sys.executable, "-m", "autollmr.ablate", f"--workdir={tmp_path}",
                      "--config=configs/rl.py:tiny", "--train_seeds=1"],
                     cwd=REPO, env=env, check=True, capture_output=True, text=True, timeout=400)
  # the distillation + RL run starts from the distillation run's checkpoint, not a retraining
  assert "[ablate] sft/ copied from" in r.stdout and "[sft] exists" in r.stdout
  assert {"sft_seed1", "rl_scratch_seed1", "rl_seed1"} <= set(os.listdir(tmp_path))
  with open(tmp_path / "ablation" / "episodes.jsonl") as f:
    recs = [json.loads(line) for line in f]
  n = collections.Counter(r["method"] for r in recs)
  assert set(n) >= {"distill_only", "rl_only", "distill+rl", "random", "topk_transfer"}
  assert n["random"] == n["distill_only"] == n["distill+rl"]  # one episode per task x budget x seed
  with open(tmp_path / "sft_seed1" / "results" / "episodes.jsonl") as f:
    own = [json.loads(line) for line in f]
  own = [r for r in own if r["method"] == "sft_agent"]
  want = {k: float(v.mean()) for (m, k), (v, _) in stats.overall_table(own).items()}
  md = (tmp_path / "ablation.md").read_text()
  assert "| distill_only | 1 | " + " | ".join(f"{want[k]:.4f}" for k in sorted(want)) + " |" in md

