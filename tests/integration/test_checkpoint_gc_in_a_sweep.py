"""GC keeps what it must, in a real Tune run: with keep_best=1 only the best trial's best and latest checkpoints are
left, and no trial ever finds its latest checkpoint gone while it trains."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuner.sweep.callbacks.checkpoint_gc import CheckpointGC

pytestmark = [pytest.mark.integration]


def test_only_the_best_trials_checkpoints_remain(ray_local, tmp_path):
    from ray import tune

    # Defined here, so Ray pickles it by value: Ray's workers cannot import a test module by its name.
    def train(config):
        """Checkpoints at every report; before each report, says whether its latest checkpoint is gone."""
        import tempfile

        from ray import tune

        trial_dir = Path(config["root"]) / f"trial_{tune.get_context().get_trial_id()}"
        for i in range(5):
            lost = i > 0 and not (trial_dir / f"checkpoint_{i - 1:06d}").is_dir()
            with tempfile.TemporaryDirectory() as d:
                (Path(d) / "state.bin").write_bytes(b"x" * 1000)
                loss = config["x"] + (i - 2) ** 2 / 10  # best at report 2, latest at 4
                tune.report({"loss": loss, "lost_latest": lost}, checkpoint=tune.Checkpoint.from_directory(d))

    gc = CheckpointGC("loss", "min", keep_best=1, grace_s=0)
    tuner = tune.Tuner(
        tune.with_resources(train, {"cpu": 1}),
        param_space={"x": tune.grid_search([0.4, 0.1, 0.3, 0.2]), "root": str(tmp_path / "gc")},
        tune_config=tune.TuneConfig(metric="loss", mode="min", trial_dirname_creator=lambda t: f"trial_{t.trial_id}"),
        run_config=tune.RunConfig(name="gc", storage_path=str(tmp_path), callbacks=[gc], verbose=0,
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=None)),
    )
    grid = tuner.fit()
    assert not grid.errors
    rows = [row for result in grid for row in result.metrics_dataframe.to_dict("records")]
    assert len(rows) == 20 and not any(row["lost_latest"] for row in rows)
    left = {Path(result.path).name: sorted(p.name for p in Path(result.path).glob("checkpoint_*")) for result in grid}
    best = Path(grid.get_best_result().path).name
    assert grid.get_best_result().config["x"] == 0.1
    assert left.pop(best) == ["checkpoint_000002", "checkpoint_000004"]
    assert all(names == [] for names in left.values())


OBJECTIVE = '''
import tempfile
from pathlib import Path

from ray import tune


def train(config):
    for i in range(4):
        with tempfile.TemporaryDirectory() as d:
            (Path(d) / "state.bin").write_bytes(b"x" * 1000)
            tune.report({"loss": config["x"] + (i - 2) ** 2 / 10}, checkpoint=tune.Checkpoint.from_directory(d))
'''


@pytest.mark.parametrize("where", ["local", "bucket"])
def test_a_sweep_keeps_the_best_k_trials_checkpoints(ray_local, tmp_path, storage, where, request, monkeypatch):
    """The policy deletes on local storage and in a bucket (S3 on loopback) alike."""
    from tuner.spec import validate
    from tuner.sweep.driver import run_sweep

    located: dict = {"storage": str(storage)}

    def checkpoints(trial_path: str) -> list[str]:
        return sorted(p.name for p in Path(trial_path).glob("checkpoint_*"))

    if where == "bucket":
        import pyarrow.fs as pafs

        s3 = request.getfixturevalue("s3")
        monkeypatch.setenv("TUNER_CACHE", str(tmp_path / "cache"))
        located = {"storage": s3.bucket("gc-keep-best"), "storage_endpoint": s3.endpoint}

        def checkpoints(trial_path: str) -> list[str]:
            infos = s3.filesystem().get_file_info(pafs.FileSelector(trial_path.removeprefix("s3://")))
            return sorted(i.base_name for i in infos if i.base_name.startswith("checkpoint_"))

    (tmp_path / "ckpt_objective.py").write_text(OBJECTIVE)
    spec = validate({"name": "gc-keep-best", **located, "trainable": "ckpt_objective:train",
                     "checkpoint": {"keep_best": 2},
                     "search": {"metric": "loss", "mode": "min", "algorithm": "grid", "scheduler": "fifo",
                                "max_concurrent": 2, "space": {"x": {"grid": [0.4, 0.1, 0.3, 0.2]}}}},
                    spec_dir=tmp_path)
    summary = run_sweep(spec).summary
    by_x = {t["config"]["x"]: t for t in summary["trials"]}
    for x in (0.1, 0.2):  # the best two keep their best and latest
        assert checkpoints(by_x[x]["path"]) == ["checkpoint_000002", "checkpoint_000003"]
        assert Path(by_x[x]["checkpoint"]).name == "checkpoint_000002"
    for x in (0.3, 0.4):  # the others keep nothing, and no longer name a checkpoint
        assert not checkpoints(by_x[x]["path"]) and by_x[x]["checkpoint"] is None
    best = summary["best"]["checkpoint"]
    assert summary["best"]["config"] == {"x": 0.1} and best.rsplit("/", 1)[1] in checkpoints(best.rsplit("/", 1)[0])
