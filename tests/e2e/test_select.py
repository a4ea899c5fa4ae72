"""Model selection on validation: the grid, holding families out as validation, the summary."""
import pytest

from autollmr import pipeline
from autollmr import select
from autollmr.gym import synthetic
from configs import common


def test_parse_grid_is_the_product_and_rejects_bad_axes():
  pts = select.parse_grid(["model.layers=1,2", "sim.member_draws=false"])
  assert pts == [{"model.layers": "1", "sim.member_draws": "false"},
                 {"model.layers": "2", "sim.member_draws": "false"}]
  assert select.point_name(pts[1]) == "layers-2_member_draws-false"
  assert select.parse_grid([]) == [{}]
  with pytest.raises(ValueError, match="model.layers"):
    select.parse_grid(["model.layers"])


def test_val_families_moves_training_tasks_to_validation():
  cfg = common.base()
  tables = {t.name: t for t in synthetic.synthetic_tables() if t.name == "synthetic_steplaw_dense"}
  before = pipeline.curate_all(cfg, tables)["synthetic_steplaw_dense"]
  assert before["train"]
  cfg.tasks.val_families = "synthetic_steplaw_dense"
  after = pipeline.curate_all(cfg, tables)["synthetic_steplaw_dense"]
  assert after["train"] == [] and after["test"] == before["test"]
  assert {t.target for t in after["val"]} == {t.target for t in before["train"] + before["val"]}
  assert all(t.split == "val" for t in after["val"])
  cfg.tasks.val_families = "nope"
  with pytest.raises(ValueError, match="val_families.*nope"):
    pipeline.curate_all(cfg, tables)


def test_summary_marks_the_best_point(tmp_path):
  res = [dict(point={"m.x": a}, seed=s, val_regret=v, by_table={"t": v}, step=1)
         for a, s, v in [("1", 0, 0.2), ("1", 1, 0.4), ("2", 0, 0.1), ("2", 1, 0.1)]]
  rows = select.summarize(res)
  assert [round(r["val_regret_mean"], 3) for r in rows] == [0.3, 0.1]
  md = select.write(str(tmp_path), res, rows, "python -m autollmr.select ...")
  assert "**0.1000 +- 0.0000**" in md and (tmp_path / "selection.json").exists()


