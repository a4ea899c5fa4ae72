"""Loaders: small reshaping steps for sources a flat spec cannot express (spec key `loader`).

Each takes the frame of a spec's CSV rows and its base directory and returns the frame with the
columns the spec names. A spec names one of LOADERS; nothing else is looked up.
"""
from __future__ import annotations

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


LOADERS = {"admire": admire, "hwgpt": hwgpt, "regmix": regmix}
