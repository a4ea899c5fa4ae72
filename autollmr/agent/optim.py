"""Optimizers and fresh training states of the agent (SFT and RL)."""
from __future__ import annotations

import functools

from flax import nnx
import optax

from autollmr.agent import model as model_lib


def sft_optimizer(config):
  """AdamW with linear warmup and cosine decay to 1% of sft.lr, global-norm clipping."""
  c = config.sft
  return _optimizer(float(c.lr), int(c.warmup_steps), int(c.steps), float(c.weight_decay),
                    float(c.clip_norm))


@functools.lru_cache(maxsize=4)  # the same object for the same settings: train steps get reused
def _optimizer(peak, warmup, steps, weight_decay, clip_norm):
  warmup = min(warmup, max(steps // 2, 1))  # short test runs still decay
  lr = optax.warmup_cosine_decay_schedule(0.0, peak, warmup, max(steps, warmup + 1),
                                          end_value=0.01 * peak)
  return optax.chain(optax.clip_by_global_norm(clip_norm),
                     optax.adamw(lr, weight_decay=weight_decay)), lr


def sft_state(config):
  """(graphdef, state, lr schedule) of a fresh policy and its SFT optimizer."""
  model = model_lib.make_policy(config.model, seed=int(config.seed))
  tx, lr = sft_optimizer(config)
  opt = nnx.Optimizer(model, tx, wrt=nnx.Param)
  graphdef, state = nnx.split((model, opt))
  return graphdef, state, lr


def rl_optimizer(config):
  """AdamW (no weight decay) with warmup and cosine decay to 10% of rl.lr, clipping."""
  c = config.rl
  lr = optax.warmup_cosine_decay_schedule(0.0, c.lr, max(int(c.warmup_steps), 1),
                                          max(int(c.steps), int(c.warmup_steps) + 1),
                                          end_value=0.1 * c.lr)
  return optax.chain(optax.clip_by_global_norm(c.clip_norm), optax.adamw(lr, weight_decay=0.0)), lr
