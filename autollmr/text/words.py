"""Text rendering of tasks, observations and actions; the sentencepiece tokenizer; the trie mask.

Why text: the research agent of the paper is a language model that reads its experiments as text
and answers with a configuration. Everything here is a finite table, so every line the text
environment can emit is rendered and tokenized ONCE, host side, into lookup arrays
(`TextArrays`); inside `jax.jit` the environment only gathers rows of those arrays.

Lines (one candidate = one (fidelity, config) pair):
  header   "<table> <objective> (<min|max>) target <fidelity> budget <K> runs"
  action   "<fidelity> <config>"  config = its feature values with 3 significant digits, e.g.
           "-22.9,2,-4" (log2 lr, log2 group size, log10 kl); a name over 40 characters becomes
           "config <index>" (config_names)
  result   " : +1.23"  the normalized outcome the env shows (higher is better, symlog, +-5),
           sign and two decimals always written: a fixed format the tokenizer splits into digits
A known result is an action line followed by its result line; a turn is the policy's action line
and the env's result line.

Tokens (`split_digits`: every digit its own piece, so numbers tokenize the same way everywhere;
`byte_fallback`: a string never seen in training, e.g. a test fidelity's name, still round-trips;
identity normalization, no dummy prefix: decode(encode(line)) == line). The action's token row is
its tokens + EOS (the EOS makes the set of action strings prefix-free), padded with PAD.
"""
from __future__ import annotations

import io
import os

from flax import struct
import jax
import jax.numpy as jnp
import numpy as np
import sentencepiece as spm

from autollmr import errors
from autollmr.gym import env as env_lib

PAD, UNK, BOS, EOS = 0, 1, 2, 3
TOKENIZER = "tokenizer.model"


# --- rendering (host side) ----------------------------------------------------------------------


def fmt_value(v: float) -> str:
  return f"{float(v):+.2f}"


MAX_LABEL_CHARS = 40  # longer names (admire's 19, regmix's 17 mixture weights) become an index
_NAMES = {}


def config_names(table) -> list[str]:
  """Per config: its values with 3 significant digits ("-22.9,2,-4"), so a config under a
  configuration-space shift (hwgpt L) still reads as near the cheap configs it resembles; a
  value string shared by several configs gets " #<index>" appended. Over MAX_LABEL_CHARS:
  "config <index>" (the table's config index, the same at every fidelity, so a cheap result and
  its target run still share the name the policy copies). Computed over all configs of the
  table, so a training view and the full table name configs alike."""
  key = (table.name, table.config_features_CxD.shape, table.config_features_CxD.tobytes())
  if key not in _NAMES:
    vals = [",".join(f"{x:.3g}" for x in row) for row in table.config_features_CxD]
    if vals and max(len(v) for v in vals) + 7 <= MAX_LABEL_CHARS:
      count = {}
      for v in vals:
        count[v] = count.get(v, 0) + 1
      names = [v if count[v] == 1 else f"{v} #{c}" for c, v in enumerate(vals)]
    else:
      names = [f"config {c}" for c in range(len(vals))]
    _NAMES[key] = names
  return _NAMES[key]


def config_name(table, c: int) -> str:
  return config_names(table)[c]


def action_line(table, f: int, c: int) -> str:
  return f"{table.fidelity_names[f]} {config_name(table, c)}"


def result_text(norm: float) -> str:
  return f" : {fmt_value(norm)}"


def header_line(table, task) -> str:
  return (f"{table.name} {table.objective} ({table.direction}) target {task.target} "
          f"budget {task.budget:g} runs")


def norm_values(params, table) -> np.ndarray:
  """N x A normalized outcome of every candidate, as env.normalize computes it (NaN: padding)."""
  p = jax.tree.map(np.asarray, params)
  n = np.arange(p.cand_fid_NxA.shape[0])[:, None]
  f, c = p.cand_fid_NxA, p.cand_config_NxA
  y = np.where(table.valid_FxC[f, c], table.values_FxC[f, c], np.nan)
  z = -p.sign * (y - p.loc_NxF[n, f]) / p.scale_NxF[n, f]
  out = np.clip(np.sign(z) * np.log1p(np.abs(z)), -env_lib.NORM_CLIP, env_lib.NORM_CLIP)
  return np.where(p.cand_exists_NxA, out, np.nan)


def task_lines(params, table, tasks) -> list[dict]:
  """Per task: header, and per candidate its action line and result text (None on padding)."""
  p = jax.tree.map(np.asarray, params)
  norm = norm_values(params, table)
  out = []
  for i, task in enumerate(tasks):
    acts, ress = [], []
    for a in range(p.cand_fid_NxA.shape[1]):
      if not p.cand_exists_NxA[i, a]:
        acts.append(None)
        ress.append(None)
        continue
      acts.append(action_line(table, int(p.cand_fid_NxA[i, a]), int(p.cand_config_NxA[i, a])))
      ress.append(result_text(norm[i, a]))
    live = [x for x in acts if x is not None]
    if len(set(live)) != len(live):  # labels must name configs uniquely: the trie needs it
      raise ValueError(f"table {table.name!r}: two candidates of task {task.name!r} render to the "
                       "same action line (duplicate config labels)")
    out.append(dict(header=header_line(table, task), action=acts, result=ress))
  return out


# --- the tokenizer -------------------------------------------------------------------------------


def train_tokenizer(lines, path: str, vocab_size: int = 384) -> None:
  """A small deterministic BPE over rendered lines (one thread, no shuffling, fixed order)."""
  buf = io.BytesIO()
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(list(lines)), model_writer=buf, vocab_size=int(vocab_size),
      model_type="bpe", split_digits=True, byte_fallback=True, character_coverage=1.0,
      normalization_rule_name="identity", remove_extra_whitespaces=False, add_dummy_prefix=False,
      pad_id=PAD, unk_id=UNK, bos_id=BOS, eos_id=EOS, input_sentence_size=1_000_000,
      shuffle_input_sentence=False, num_threads=1, hard_vocab_limit=False, minloglevel=2)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = path + ".tmp"
  with open(tmp, "wb") as f:
    f.write(buf.getvalue())
  os.replace(tmp, path)


def load_tokenizer(path: str):
  if not os.path.exists(path):
    raise errors.UserError(f"no tokenizer at {path}: train it with `python -m autollmr.text "
                           "--config=... --workdir=DIR` (the lm sft stage does it too)")
  return spm.SentencePieceProcessor(model_file=path)


def encode(sp, s: str) -> list[int]:
  return list(sp.encode(s))


def decode(sp, ids) -> str:
  return sp.decode([int(i) for i in ids if int(i) not in (PAD, BOS, EOS)])


def _row(ids, width: int, what: str) -> np.ndarray:
  if len(ids) > width:
    raise ValueError(f"a rendered {what} takes {len(ids)} tokens, more than the {width} its slot "
                     f"holds (raise config.lm.{what}_tokens)")
  return np.pad(np.asarray(ids, np.int32), (0, width - len(ids)))


# --- lookup arrays --------------------------------------------------------------------------------


@struct.dataclass
class TextArrays:
  header_NxH: jax.Array  # int32 header tokens per task
  act_NxAxL: jax.Array  # action tokens + EOS per candidate (all PAD on padding candidates)
  res_NxAxR: jax.Array  # result tokens per candidate


def arrays(sp, lines: list[dict], lc) -> TextArrays:
  H, L, R = int(lc.header_tokens), int(lc.action_tokens), int(lc.result_tokens)
  A = len(lines[0]["action"])
  head = np.stack([_row(encode(sp, x["header"]), H, "header") for x in lines])
  act = np.zeros((len(lines), A, L), np.int32)
  res = np.zeros((len(lines), A, R), np.int32)
  for i, x in enumerate(lines):
    for a, (s, r) in enumerate(zip(x["action"], x["result"])):
      if s is not None:
        act[i, a] = _row(encode(sp, s) + [EOS], L, "action")
        res[i, a] = _row(encode(sp, r), R, "result")
  return TextArrays(jnp.asarray(head), jnp.asarray(act), jnp.asarray(res))


# --- the trie mask --------------------------------------------------------------------------------


def trie_masks(act_AxL, open_A, tok_L, vocab: int):
  """L x V: at step j, the tokens v such that prefix tok_L[:j] + [v] is a prefix of the token row
  of some open action. All steps at once (a decoder reads row j; the loss reads them all).

  Why arrays: match[a, j] = open[a] and act[a, :j] == tok[:j] (a cumulative product), and the
  mask is a scatter-max of match into act's token ids: jittable, O(A L), no Python trie.
  """
  A, L = act_AxL.shape
  eq_AxL = (act_AxL == tok_L[None]).astype(jnp.int32)
  prefix_AxL = jnp.concatenate([jnp.ones((A, 1), jnp.int32), jnp.cumprod(eq_AxL, 1)[:, :-1]], 1)
  match_AxL = prefix_AxL * open_A[:, None].astype(jnp.int32)
  steps = jnp.broadcast_to(jnp.arange(L)[None], (A, L))
  return jnp.zeros((L, vocab), jnp.int32).at[steps, act_AxL].max(match_AxL) > 0


def trie_mask_at(act_AxL, open_A, tok_L, j, vocab: int):
  """Row j of `trie_masks` for a traced j (the decoder's step): V bools."""
  A, L = act_AxL.shape
  before = jnp.arange(L) < j
  match_A = open_A & jnp.all((act_AxL == tok_L[None]) | ~before[None], axis=1)
  nxt_A = jnp.take_along_axis(act_AxL, jnp.broadcast_to(j, (A, 1)).astype(jnp.int32), 1)[:, 0]
  return jnp.zeros((vocab,), jnp.int32).at[nxt_A].max(match_A.astype(jnp.int32)) > 0


def chosen(act_AxL, open_A, tok_L):
  """The candidate whose token row the decoded tokens spell (the trie makes it exist)."""
  return jnp.argmax(open_A & jnp.all(act_AxL == tok_L[None], axis=1)).astype(jnp.int32)


# --- the training corpus and the command ---------------------------------------------------------


def episode_text(lines: dict, known_A: list[int], actions: list[int]) -> list[str]:
  """The text of one episode: header, known results, then one line per turn."""
  out = [lines["header"]]
  out += [lines["action"][a] + lines["result"][a] for a in known_A]
  out += [lines["action"][a] + lines["result"][a] for a in actions]
  return out


def corpus(bank_lines: list[dict]) -> list[str]:
  """Every header and every candidate's known-result line of the training bank (deterministic
  order). These are exactly the lines the rendered training episodes are made of."""
  out = []
  for x in bank_lines:
    out.append(x["header"])
    out += [s + r for s, r in zip(x["action"], x["result"]) if s is not None]
  return out
