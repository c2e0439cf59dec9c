"""The spec contract: every problem reported at once with its dotted key; overrides with type coercion."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tuner.spec import SpecError, apply_overrides, load, validate

REPO = Path(__file__).resolve().parents[3]

# (what is wrong, overrides to a valid tiny spec, the dotted key the error must name)
MALFORMED = [
    ("unknown top-level key", {"bogus": 1}, "bogus"),
    ("unknown nested key", {"train": {"lrr": 0.1}}, "train.lrr"),
    ("negative learning rate", {"train": {"lr": -1.0e-3}}, "train.lr"),
    ("wrong type", {"data": {"seq_len": "long"}}, "data.seq_len"),
    ("dropout out of range", {"model": {"dropout": 1.5}}, "model.dropout"),
    ("section is not a mapping", {"train": 5}, "train"),
    ("eval_every beyond max_steps", {"train": {"eval_every": 500}}, "train.eval_every"),
    ("heads do not divide hidden", {"model": {"hidden_size": 30, "num_heads": 4}}, "model.num_heads"),
    ("unknown model family", {"model": {"family": "lama"}}, "model.family"),
    ("missing data file", {"data": {"source": "/nonexistent/corpus.txt"}}, "data.source"),
    ("invalid sweep name", {"name": "my sweep!"}, "name"),
    ("zero trials", {"search": {"num_trials": 0}}, "search.num_trials"),
    ("bad mode", {"search": {"mode": "minimize"}}, "search.mode"),
    ("unknown algorithm", {"search": {"algorithm": "tpee"}}, "search.algorithm"),
    ("unknown scheduler", {"search": {"scheduler": "ashaa"}}, "search.scheduler"),
    ("metric the trial never reports", {"search": {"metric": "accuracy"}}, "search.metric"),
    ("unknown fidelity", {"search": {"time_attr": "epochs"}}, "search.time_attr"),
    ("empty space", {"search": {"space": {}}}, "search.space"),
    ("space key names no field", {"search": {"space": {"train.foo": {"uniform": [0, 1]}}}}, "search.space.train.foo"),
    ("space key is fixed per sweep", {"search": {"space": {"data.val_fraction": {"uniform": [0.01, 0.1]}}}},
     "search.space.data.val_fraction"),
    ("unknown dimension kind", {"search": {"space": {"train.lr": {"normal": [0, 1]}}}}, "search.space.train.lr"),
    ("log range from zero", {"search": {"space": {"train.lr": {"loguniform": [0.0, 1.0]}}}}, "search.space.train.lr"),
    ("reversed bounds", {"search": {"space": {"train.lr": {"uniform": [0.1, 0.01]}}}}, "search.space.train.lr"),
    ("floats for an integer field", {"search": {"space": {"train.batch_size": {"uniform": [4, 32]}}}},
     "search.space.train.batch_size"),
    ("a choice that breaks the model", {"search": {"space": {"model.num_heads": {"choice": [2, 3]}}}},
     "search.space.model.num_heads"),
    ("continuous dimension in a grid", {"search": {"algorithm": "grid"}}, "search.space.train.lr"),
    ("grid dimension with tpe", {"search": {"algorithm": "tpe", "space": {"train.batch_size": {"grid": [4, 8]}}}},
     "search.space.train.batch_size"),
    ("point outside the space", {"search": {"points_to_evaluate": [{"train.wd": 0.1}]}},
     "search.points_to_evaluate.0.train.wd"),
    ("fsdp on one worker", {"resources": {"strategy": "fsdp"}}, "resources.strategy"),
    ("tpe driving pbt", {"search": {"algorithm": "tpe", "scheduler": "pbt"}}, "search.algorithm"),
    ("data without source", {"data": {"seq_len": 0}}, "data.seq_len"),
    ("negative cpus", {"resources": {"cpus_per_worker": -1}}, "resources.cpus_per_worker"),
    ("infinite learning rate", {"train": {"lr": float("inf")}}, "train.lr"),
    ("infinite budget", {"search": {"max_t": float("inf")}}, "search.max_t"),
    ("a boolean for an integer", {"train": {"seed": True}}, "train.seed"),
    ("a string for an integer", {"train": {"batch_size": "16"}}, "train.batch_size"),
    ("a storage URI without a bucket", {"storage": "s3:///sweeps"}, "storage"),
    ("a storage URI of no object store", {"storage": "hdfs://host/sweeps"}, "storage"),
    ("storage that is a file", {"storage": __file__}, "storage"),
    ("storage under a file", {"storage": f"{__file__}/sweeps"}, "storage"),
    ("the budget is fixed per sweep", {"search": {"space": {"train.max_steps": {"choice": [10, 20]}}}},
     "search.space.train.max_steps"),
    ("quantized bounds off the grid", {"search": {"space": {"model.dropout": {"quniform": [0.05, 0.2, 0.1]}}}},
     "search.space.model.dropout"),
    ("grace period beyond the budget", {"search": {"scheduler": "asha", "grace_period": 10**9}},
     "search.grace_period"),
    ("partial point", {"search": {"space": {"train.lr": {"uniform": [0.001, 0.01]},
                                            "model.dropout": {"uniform": [0.0, 0.1]}},
                                  "points_to_evaluate": [{"train.lr": 0.005}]}}, "search.points_to_evaluate.0"),
    ("point outside its range", {"search": {"points_to_evaluate": [{"train.lr": 0.5}]}},
     "search.points_to_evaluate.0.train.lr"),
    ("points under grid", {"search": {"algorithm": "grid", "space": {"train.batch_size": {"grid": [2, 4]}},
                                      "points_to_evaluate": [{"train.batch_size": 2}]}}, "search.points_to_evaluate"),
    ("token budget with step fidelity", {"train": {"max_tokens": 4096}, "search": {"time_attr": "step"}},
     "train.max_tokens"),
    ("both budgets", {"train": {"max_tokens": 4096, "max_steps": 20}}, "train.max_tokens"),
    ("sampler without optuna", {"search": {"sampler": "gp"}}, "search.sampler"),
    ("acquisition without bayesopt", {"search": {"acquisition": "ei"}}, "search.acquisition"),
    ("pbt knob without pbt", {"search": {"perturbation_interval": 100}}, "search.perturbation_interval"),
    ("pbt cannot change the architecture", {"search": {"scheduler": "pbt", "algorithm": "random",
                                                       "space": {"model.num_layers": {"choice": [1, 2]}}}},
     "search.space.model.num_layers"),
    ("pb2 needs ranges", {"search": {"scheduler": "pb2", "algorithm": "random",
                                     "space": {"train.batch_size": {"choice": [2, 4]}}}},
     "search.space.train.batch_size"),
    ("unknown preset", {"search": {"preset": "bohb"}}, "search.preset"),
    ("hyperband bracket never fills", {"search": {"scheduler": "hyperband", "max_concurrent": 2}},
     "search.max_concurrent"),
    ("preset contradicted", {"search": {"preset": "pbt", "algorithm": "tpe"}}, "search.algorithm"),
    ("empty data path", {"data": {"source": ""}}, "data.source"),
]


@pytest.mark.parametrize(("what", "over", "key"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_spec_names_its_key(tiny_raw, what, over, key):
    with pytest.raises(SpecError) as e:
        validate(tiny_raw(**over))
    keys = [k for k, _ in e.value.problems]
    assert key in keys, f"{what}: expected {key} among {e.value.problems}"


def test_tiny_spec_is_valid(tiny_raw):
    spec = validate(tiny_raw())
    assert spec.model.hidden_size == 32 and spec.time_attr == "tokens"


def test_every_problem_is_reported_at_once(tiny_raw):
    raw = tiny_raw(bogus=1, train={"lr": -1, "eval_every": 500}, model={"hidden_size": 30, "famly": "x"},
                   search={"algorithm": "nope", "space": {"train.batch_size": {"uniform": [1, 8]}}})
    with pytest.raises(SpecError) as e:
        validate(raw)
    keys = {k for k, _ in e.value.problems}
    assert {"bogus", "train.lr", "model.famly", "train.eval_every", "model.num_heads", "search.algorithm",
            "search.space.train.batch_size"} <= keys


def test_unknown_key_suggests_the_right_one(tiny_raw):
    with pytest.raises(SpecError) as e:
        validate(tiny_raw(train={"learning_rate": 0.1, "batch_sise": 8}))
    msgs = dict(e.value.problems)
    assert "did you mean 'batch_size'" in msgs["train.batch_sise"]
    assert "valid keys here" in msgs["train.learning_rate"]


def test_overrides_coerce_types_and_reach_space_keys():
    raw: dict = {"name": "x", "train": {"lr": 0.1}}
    problems = apply_overrides(raw, ["train.max_steps=200", "train.lr=1e-3", "search.num_trials=6",
                                     "search.space.train.lr={loguniform: [1e-4, 1e-2]}", "model.family=gpt2",
                                     "data.source=[a.txt, b.txt]"])
    assert problems == []
    assert raw["train"] == {"lr": 1e-3, "max_steps": 200}
    assert raw["search"]["space"] == {"train.lr": {"loguniform": [1e-4, 1e-2]}}
    assert raw["model"]["family"] == "gpt2" and raw["data"]["source"] == ["a.txt", "b.txt"]


def test_malformed_override_is_a_problem():
    raw: dict = {"name": "x", "train": 3}
    problems = apply_overrides(raw, ["train.lr", "train.lr=0.1"])
    assert [k for k, _ in problems] == ["--set train.lr", "train"]


def test_load_applies_overrides_and_reports_them(tmp_path, tiny_raw):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(tiny_raw()))
    spec = load(path, ["train.max_steps=40", "search.num_trials=3"])
    assert spec.train.max_steps == 40 and spec.search.num_trials == 3
    with pytest.raises(SpecError) as e:
        load(path, ["train.lr=-1", "bogus=2"])
    assert {k for k, _ in e.value.problems} == {"train.lr", "bogus"}


def test_yaml_exponent_floats_are_numbers(tmp_path, tiny_raw):
    raw = tiny_raw()
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(raw).replace("0.003", "3e-3"))
    assert load(path).train.lr == pytest.approx(3e-3)


def test_custom_trainable_spec(tmp_path):
    (tmp_path / "obj.py").write_text("def train(config):\n    pass\n")
    spec = validate({"name": "c", "trainable": "obj:train",
                     "search": {"metric": "loss", "space": {"x": {"uniform": [0, 1]}}}}, spec_dir=tmp_path)
    assert spec.spec_dir == str(tmp_path.resolve())
    assert spec.is_custom and spec.time_attr == "training_iteration"
    with pytest.raises(SpecError) as e:
        validate({"name": "c", "trainable": "obj:nope", "model": {"hidden_size": 8},
                  "search": {"space": {"x": {"uniform": [0, 1]}}}}, spec_dir=tmp_path)
    assert {k for k, _ in e.value.problems} == {"trainable", "model", "search.metric"}


def test_one_fixed_mistake_is_reported_once(tiny_raw):
    raw = tiny_raw(train={"eval_every": 500}, search={"space": {"train.lr": {"uniform": [0.001, 0.01]},
                                                                "train.batch_size": {"choice": [2, 4]}}})
    with pytest.raises(SpecError) as e:
        validate(raw)
    assert [k for k, _ in e.value.problems] == ["train.eval_every"]


def test_a_bad_trainable_keeps_custom_mode(tmp_path):
    with pytest.raises(SpecError) as e:
        validate({"name": "c", "trainable": "not a function", "search": {"metric": "loss",
                                                                       "space": {"x": {"uniform": [0, 1]}}}},
                 spec_dir=tmp_path)
    assert [k for k, _ in e.value.problems] == ["trainable"]


def test_combinations_of_model_ranges_are_checked(tiny_raw):
    space = {"model.hidden_size": {"quniform": [24, 96, 12]}, "model.num_heads": {"choice": [4, 8]}}
    with pytest.raises(SpecError) as e:
        validate(tiny_raw(search={"space": space}))
    assert [k for k, _ in e.value.problems] == ["search.space"]
    assert "gives an invalid spec: model.num_heads" in e.value.problems[0][1]


def test_token_budget_is_checked_in_steps_at_the_largest_batch(tiny_raw):
    raw = tiny_raw(train={"max_tokens": 512, "warmup_steps": 4, "eval_every": 5},
                   search={"space": {"train.batch_size": {"choice": [2, 4]}}})
    del raw["train"]["max_steps"]
    with pytest.raises(SpecError) as e:
        validate(raw)  # 512 tokens at 4 x 32 per step: 4 steps
    assert [k for k, _ in e.value.problems] == ["train.eval_every", "train.warmup_steps"]


def test_paths_are_relative_to_the_spec(tmp_path, corpus):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "c.txt").write_text(corpus.read_text())
    spec_file = tmp_path / "s.yaml"
    spec_file.write_text(yaml.safe_dump({"name": "p", "data": {"source": "data/c.txt"},
                                         "search": {"space": {"train.lr": {"uniform": [0.001, 0.01]}}}}))
    spec = load(spec_file)
    assert spec.data.source == [str(tmp_path / "data" / "c.txt")]


def test_pretrained_directory_needs_a_tokenizer_and_enough_positions(tmp_path, tiny_raw):
    (tmp_path / "lm").mkdir()
    (tmp_path / "lm" / "config.json").write_text('{"model_type": "gpt2", "n_positions": 16}')
    raw = tiny_raw(model={"pretrained": str(tmp_path / "lm")})
    del raw["model"]["family"], raw["model"]["hidden_size"], raw["model"]["num_layers"], raw["model"]["num_heads"]
    with pytest.raises(SpecError) as e:
        validate(raw)
    keys = [k for k, _ in e.value.problems]
    assert keys == ["model.pretrained", "data.seq_len"]


def test_duplicate_yaml_keys_and_directories_are_errors(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("name: a\ntrain:\n  lr: 0.1\n  lr: 0.2\n")
    with pytest.raises(SpecError, match="duplicate key 'lr'"):
        load(path)
    with pytest.raises(SpecError, match="is a directory"):
        load(tmp_path)


def test_presets_compose_a_searcher_and_a_scheduler(tiny_raw):
    def pair(**search):
        raw = tiny_raw()
        del raw["search"]["algorithm"], raw["search"]["scheduler"], raw["search"]["max_concurrent"]
        raw["search"].update(search)
        s = validate(raw).search
        return s.algorithm, s.scheduler

    assert pair() == ("mftpe", "rung-asha")  # the default preset, mf-tpe
    assert pair(preset="asha-tpe") == ("tpe", "asha")
    assert pair(algorithm="tpe") == ("tpe", "asha") and pair(scheduler="asha") == ("tpe", "asha")
    assert pair(algorithm="mftpe") == ("mftpe", "rung-asha") and pair(scheduler="rung-asha") == ("mftpe", "rung-asha")
    assert pair(preset="hyperband-tpe") == ("tpe", "hyperband")
    assert pair(preset="pbt") == ("random", "pbt")
    assert pair(preset="random") == ("random", "fifo")
    assert pair(scheduler="pb2") == ("random", "pb2")
    assert pair(scheduler="fifo") == ("mftpe", "fifo")  # every trial full-length: TPE as Optuna runs it
    assert pair(algorithm="grid", space={"train.batch_size": {"choice": [2, 4]}}) == ("grid", "fifo")
    assert pair(preset="pbt", scheduler="pbt") == ("random", "pbt")


def test_every_shipped_job_validates():
    jobs = sorted((REPO / "jobs").glob("*.yaml"))
    assert jobs, "jobs/ holds no specs"
    for path in jobs:
        load(path)


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tuner", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def test_cli_invalid_spec_exits_2_names_both_keys_and_starts_nothing(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text((REPO / "jobs" / "quickstart.yaml").read_text()
                    .replace("  lr: 3.0e-4", "  lr: -3.0e-4\n  colour: blue")
                    .replace("storage: ./sweeps", f"storage: {tmp_path / 'out'}"))
    for command in ("validate", "run"):
        r = _cli(command, str(spec), cwd=tmp_path)
        assert r.returncode == 2, r.stderr
        assert "train.lr" in r.stderr and "train.colour" in r.stderr
        assert "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists()


def test_cli_validate_ok_and_results_of_missing_dir(tmp_path):
    r = _cli("validate", str(REPO / "jobs" / "quickstart.yaml"), "--set", "search.num_trials=4", cwd=tmp_path)
    assert r.returncode == 0 and "4 trials" in r.stdout
    r = _cli("results", str(tmp_path / "nothing"), cwd=tmp_path)
    assert r.returncode == 2 and "no summary.json" in r.stderr
