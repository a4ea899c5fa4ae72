"""Loaders: small reshaping steps for sources a flat spec cannot express (spec key `loader`).

Each takes the frame of a spec's CSV rows and its base directory and returns the frame with the
columns the spec names. A spec names one of LOADERS; nothing else is looked up.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd

from autollmr.gym import spec as spec_lib

# Qwen2.5 parameter counts from the model cards (total params, billions).
QWEN25_PARAMS = {"Qwen2.5-0.5B": 0.49e9, "Qwen2.5-3B": 3.09e9, "Qwen2.5-7B": 7.61e9}

# HW-GPT-Bench choices per space (automl/HW-GPT-Bench configs/config_train/owt_{s,m,l}.yaml).
HWGPT_SPACES = {
    "S": dict(embed=(192, 384, 768), layers=(10, 11, 12), heads=12),
    "M": dict(embed=(256, 512, 1024), layers=(22, 23, 24), heads=16),
    "L": dict(embed=(320, 640, 1280), layers=(34, 35, 36), heads=20),
}


def admire(df: pd.DataFrame, base_dir: str) -> pd.DataFrame:
  unknown = sorted(set(df["model"]) - set(QWEN25_PARAMS))
  if unknown:
    raise spec_lib.SpecError(f"{df['_file'].iloc[0]}: column 'model' has unknown model(s) "
                             f"{unknown}; known: {sorted(QWEN25_PARAMS)}")
  df = df.copy()
  df["model_params"] = df["model"].map(QWEN25_PARAMS)
  return df


def hwgpt(df: pd.DataFrame, base_dir: str) -> pd.DataFrame:
  df = df.copy()
  space = df["_file"].str.extract(r"hwgpt_([sml])_archs", expand=False).str.upper()
  if space.isna().any():
    raise spec_lib.SpecError(f"{df['_file'][space.isna()].iloc[0]}: file name must look like "
                             "hwgpt_{s,m,l}_archs.csv (the space is read from it)")
  df["space"] = space
  for col in ("embed_dim", "n_layer", "mean_n_head", "params"):
    spec_lib.numeric(df, col, "loader hwgpt", allow_missing=False)
  tiers = []
  for s, cfg in HWGPT_SPACES.items():
    m = (space == s).to_numpy()
    e = df.loc[m, "embed_dim"].map({v: i for i, v in enumerate(cfg["embed"])})
    d = df.loc[m, "n_layer"].map({v: i for i, v in enumerate(cfg["layers"])})
    if e.isna().any() or d.isna().any():
      r = np.flatnonzero(m)[int(np.flatnonzero((e.isna() | d.isna()).to_numpy())[0])]
      raise spec_lib.SpecError(
          f"{df['_file'].iloc[r]}: line {df['_line'].iloc[r]}: embed_dim/"
          f"n_layer outside space {s}'s choices {cfg['embed']}/{cfg['layers']}")
    df.loc[m, "embed_tier"] = e.to_numpy(float)
    df.loc[m, "depth_tier"] = d.to_numpy(float)
    df.loc[m, "heads_frac"] = df.loc[m, "mean_n_head"] / cfg["heads"]
    tiers.append(s)
  df["bias"] = df["bias"].astype(str).str.lower().map({"true": 1.0, "false": 0.0})
  # The space's largest model: the fidelity feature (one number per space, known a priori).
  df["space_max_params"] = df.groupby("space")["params"].transform("max")
  return df


def regmix(df: pd.DataFrame, base_dir: str) -> pd.DataFrame:
  """Joins each mixture file with its loss file on `index`; the size comes from the file name."""
  out = []
  for path, part in df.groupby("_file", sort=False):
    size = os.path.basename(path).split("_")[-1].split(".")[0]  # test_mixture_60m.csv -> 60m
    loss_path = os.path.join(os.path.dirname(path), f"test_pile_loss_{size}.csv")
    if not os.path.exists(loss_path):
      raise spec_lib.SpecError(f"{path}: its loss file {loss_path} is missing (loader regmix)")
    loss = pd.read_csv(loss_path)
    if "index" not in loss.columns or "index" not in part.columns:
      raise spec_lib.SpecError(f"{loss_path}: no column 'index' to join on (loader regmix)")
    merged = part.merge(loss, on="index", how="left", validate="one_to_one")
    merged["size"] = size.upper()
    out.append(merged)
  df = pd.concat(out, ignore_index=True)
  df["params"] = df["size"].map({"1M": 1e6, "60M": 60e6, "1B": 1e9})
  df["tokens"] = 1e9
  return df


def marin(df: pd.DataFrame, base_dir: str) -> pd.DataFrame:
  """Each row's full hyperparameter vector: its cell's JSON `baseline_config`, with an ablation's
  one `param` set to `value`; one column per hyperparameter (empty where an optimizer has none,
  true/false as 1/0) and `config_id`, the canonical JSON of the vector and the optimizer."""
  # Why a loader: a spec cannot parse a JSON column nor apply a one-parameter override.
  for col in ("optimizer", "row_type", "param", "value", "baseline_config"):
    spec_lib.need_column(df, col, "loader marin", "loader")
  vectors = []
  for r in range(len(df)):
    at = f"{df['_file'].iloc[r]}: line {df['_line'].iloc[r]}"
    try:
      vec = json.loads(df["baseline_config"].iloc[r])
    except (TypeError, json.JSONDecodeError) as e:
      raise spec_lib.SpecError(f"{at}: column 'baseline_config' is not a JSON object: {e} "
                               "(loader marin)") from None
    if not isinstance(vec, dict):
      raise spec_lib.SpecError(f"{at}: column 'baseline_config' is not a JSON object "
                               "(loader marin)")
    kind = df["row_type"].iloc[r]
    if kind == "ablation":
      param = df["param"].iloc[r]
      if param not in vec:
        raise spec_lib.SpecError(f"{at}: ablated param {param!r} is not in the baseline_config "
                                 f"(keys {sorted(vec)}; loader marin)")
      vec[param] = _parse_value(df["value"].iloc[r])
    elif kind != "baseline":
      raise spec_lib.SpecError(f"{at}: column 'row_type' is {kind!r}, not 'baseline' or "
                               "'ablation' (loader marin)")
    vec = {k: _canonical(v) for k, v in vec.items()}
    vec["optimizer"] = str(df["optimizer"].iloc[r])
    vectors.append(vec)
  wide = pd.DataFrame(vectors, index=df.index).drop(columns="optimizer")
  clash = sorted(set(wide.columns) & set(df.columns))
  if clash:
    raise spec_lib.SpecError(f"{df['_file'].iloc[0]}: hyperparameter(s) {clash} clash with CSV "
                             "columns (loader marin)")
  for col in wide.columns:  # true/false -> 1/0, so a spec can use them as numbers
    if all(isinstance(v, bool) for v in wide[col].dropna()):
      wide[col] = wide[col].map(lambda v: float(v) if isinstance(v, bool) else np.nan)
  wide["config_id"] = [json.dumps(v, sort_keys=True) for v in vectors]
  return pd.concat([df, wide], axis=1)


def _parse_value(text):
  """An ablation's value as written in the CSV: a number, true/false, or text."""
  s = str(text).strip()
  if s in ("True", "False", "true", "false"):
    return s.lower() == "true"
  try:
    return float(s)
  except ValueError:
    return s.strip("'\"")


def _canonical(v):
  """6 significant digits, so 1 == 1.0 and 9.999999999999999e-26 == 1e-25 name one config."""
  if isinstance(v, bool) or not isinstance(v, (int, float)):
    return v
  return float(f"{float(v):.6g}")


LOADERS = {"admire": admire, "hwgpt": hwgpt, "marin": marin, "regmix": regmix}
