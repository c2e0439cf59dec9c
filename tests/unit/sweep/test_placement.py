"""Sharded-trial spec rules and the placement pre-flight, against described nodes (no Ray)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuner._util.node_types import NodeType
from tuner.spec import SpecError, validate
from tuner.spec.fidelity import fidelity, tokens_per_step
from tuner.sweep.placement import fit_to_cluster, trials_at_once

NODE_4GPU = {"CPU": 16.0, "GPU": 4.0, "memory": 1e11}
NODE_CPU = {"CPU": 2.0, "memory": 1e10}


def problems(raw: dict) -> dict[str, str]:
    with pytest.raises(SpecError) as e:
        validate(raw)
    return dict(e.value.problems)


def sharded(tiny_raw, **resources):
    return tiny_raw(resources={"workers_per_trial": 2, **resources})


def test_trials_at_once_counts_whole_gangs_over_nodes():
    assert trials_at_once([NODE_4GPU, NODE_4GPU], {"CPU": 1, "GPU": 1}, 2) == 4
    assert trials_at_once([NODE_4GPU, NODE_4GPU], {"CPU": 1, "GPU": 3}, 2) == 1  # one worker per node
    assert trials_at_once([NODE_4GPU], {"CPU": 1, "GPU": 3}, 2) == 0
    assert trials_at_once([NODE_CPU], {"CPU": 0.5}, 2) == 2
    assert trials_at_once([NODE_CPU, {"CPU": 0.0, "memory": 1e9}], {"CPU": 1}, 1) == 2  # a driver-only head


def test_an_unplaceable_trial_fails_fast_naming_the_request_and_the_largest_node(tiny_raw):
    spec = validate(sharded(tiny_raw, gpus_per_worker=3))
    with pytest.raises(SpecError) as e:
        fit_to_cluster(spec, nodes=[NODE_4GPU, NODE_CPU])
    (key, message), = e.value.problems
    assert key == "resources"
    assert "2 workers x {CPU: 1, GPU: 3}" in message and "largest node has {CPU: 16, GPU: 4}" in message
    assert "holds at most 1 such worker" in message


def test_sharded_concurrency_is_capped_at_the_trials_that_fit(tiny_raw):
    spec = validate(sharded(tiny_raw, gpus_per_worker=1))
    assert fit_to_cluster(spec, nodes=[NODE_4GPU]).search.max_concurrent == 2
    spec = validate(sharded(tiny_raw, gpus_per_worker=1, cpus_per_worker=1))
    capped = fit_to_cluster(spec.model_copy(update={"search": spec.search.model_copy(update={"max_concurrent": 1})}),
                            nodes=[NODE_4GPU])
    assert capped.search.max_concurrent == 1
    assert capped.spec_dir == spec.spec_dir
    single = validate(tiny_raw(resources={"gpus_per_worker": 0.25}))
    assert fit_to_cluster(single, nodes=[NODE_4GPU]) is single  # Tune places single-worker trials itself


def test_sharded_resource_rules(tiny_raw):
    assert "resources.strategy" in problems(tiny_raw(resources={"strategy": "fsdp"}))
    assert "resources.gpus_per_worker" in problems(sharded(tiny_raw, gpus_per_worker=0.5))
    assert "resources.gpus_per_worker" in problems(tiny_raw(resources={"gpus_per_worker": 1.5}))
    validate(tiny_raw(resources={"gpus_per_worker": 0.25}))  # fractional GPUs: several small trials share one
    assert "resources.placement" in problems(sharded(tiny_raw, placement="diagonal"))


def test_global_batch_size_keeps_tokens_per_step_and_derives_accumulation(tiny_raw):
    from tuner.spec.fidelity import grad_accum_steps

    raw = sharded(tiny_raw)
    raw["train"]["global_batch_size"] = 16
    raw["search"]["space"] = {"train.batch_size": {"choice": [2, 4, 8]}}
    spec = validate(raw)
    assert tokens_per_step(spec) == 16 * 32
    assert fidelity(spec).max_t == spec.train.max_steps * 16 * 32
    for b, accum in ((2, 4), (4, 2), (8, 1)):
        assert grad_accum_steps(spec.train.model_copy(update={"batch_size": b}), 2) == accum

    raw["search"]["space"] = {"train.batch_size": {"choice": [4, 16]}}
    p = problems(raw)
    assert "16" in p["train.global_batch_size"] and "batch_size" in p["train.global_batch_size"]
    raw["search"]["space"] = {"train.batch_size": {"choice": [4]}}
    raw["train"]["grad_accum_steps"] = 2
    assert "train.grad_accum_steps" in problems(raw)


def test_a_custom_trainable_cannot_be_sharded(tmp_path):
    (tmp_path / "obj.py").write_text("def f(config):\n    pass\n")
    raw = {"name": "c", "trainable": "obj:f", "resources": {"workers_per_trial": 2},
           "search": {"space": {"x": {"uniform": [0, 1]}}}}
    with pytest.raises(SpecError) as e:
        validate(raw, spec_dir=tmp_path)
    assert "resources.workers_per_trial" in dict(e.value.problems)


GPU_POOL = [NodeType("gpu", {"CPU": 8.0, "GPU": 1.0}, max_workers=4)]
DRIVER_ONLY_HEAD = {"CPU": 0.0, "memory": 1e10}


def test_an_autoscaling_pool_counts_the_nodes_it_may_add(tiny_raw):
    """An empty GPU pool: nothing is up but a driver-only head, and each trial fits a node the autoscaler can add."""
    assert trials_at_once([DRIVER_ONLY_HEAD], {"CPU": 1, "GPU": 1}, 1, GPU_POOL) == 4
    assert trials_at_once([DRIVER_ONLY_HEAD], {"CPU": 1, "GPU": 1}, 2, GPU_POOL) == 2
    single = validate(tiny_raw(resources={"gpus_per_worker": 1}))
    assert fit_to_cluster(single, nodes=[DRIVER_ONLY_HEAD], types=GPU_POOL) is single
    spread = validate(sharded(tiny_raw, gpus_per_worker=1, placement="spread"))
    assert fit_to_cluster(spread, nodes=[DRIVER_ONLY_HEAD], types=GPU_POOL).search.max_concurrent == 2


def test_a_trial_no_node_type_can_hold_is_refused_naming_the_largest_type(tiny_raw):
    spec = validate(sharded(tiny_raw, gpus_per_worker=2))
    with pytest.raises(SpecError) as e:
        fit_to_cluster(spec, nodes=[DRIVER_ONLY_HEAD], types=GPU_POOL)
    (key, message), = e.value.problems
    assert key == "resources" and "2 workers x {CPU: 1, GPU: 2}" in message
    assert "up to 4 more of 1 autoscaling node type" in message
    assert "largest node or node type has {CPU: 8, GPU: 1}" in message and "holds at most 0 such workers" in message


def test_node_types_come_from_the_shipped_cloud_configs():
    """Every worker type of each `ray up` config, its resources and max_workers as the autoscaler reads them."""
    import yaml

    from tuner._util.node_types import from_cluster_config

    root = Path(__file__).resolve().parents[3] / "cluster"
    for name in ("aws-gpu.yaml", "gcp-gpu.yaml"):
        config = yaml.safe_load((root / name).read_text())
        types = from_cluster_config(config)
        assert [t.name for t in types] == [n for n in config["available_node_types"] if n != config["head_node_type"]]
        assert all(t.resources.get("GPU", 0) >= 1 and 0 < t.max_workers <= config["max_workers"] for t in types)
    with pytest.raises(ValueError, match="available_node_types"):
        from_cluster_config({"max_workers": 2})


def test_a_head_with_no_ray_up_config_names_its_node_types_in_the_environment(tiny_raw, monkeypatch):
    """A KubeRay head: TUNER_NODE_TYPES, in a ray up config's available_node_types layout, counts as published node
    types; a bad value is refused naming the variable and what is wrong with it."""
    from tuner.sweep import placement

    monkeypatch.setattr(placement, "alive_nodes", lambda: [DRIVER_ONLY_HEAD])
    spec = validate(tiny_raw(resources={"gpus_per_worker": 1}))
    monkeypatch.setenv("TUNER_NODE_TYPES", '{"gpu": {"resources": {"CPU": 8, "GPU": 1}, "max_workers": 4}}')
    assert fit_to_cluster(spec) is spec
    for bad, says in [("{gpu", "not JSON"), ("[]", "a mapping of node types is required"),
                      ('{"gpu": {"resources": {"GPU": "one"}, "max_workers": 4}}', "gpu.resources: amounts must be"),
                      ('{"gpu": {"resources": {"GPU": 1}, "max_workers": -1}}', "gpu.max_workers: a whole number")]:
        monkeypatch.setenv("TUNER_NODE_TYPES", bad)
        with pytest.raises(SpecError) as e:
            fit_to_cluster(spec)
        (key, message), = e.value.problems
        assert key == "TUNER_NODE_TYPES" and says in message, message
        assert "invalid environment" in str(e.value)


def test_spread_puts_each_worker_of_a_trial_on_its_own_node(tiny_raw):
    bundle = {"CPU": 1, "GPU": 1}
    assert trials_at_once([NODE_4GPU], bundle, 2) == 2
    assert trials_at_once([NODE_4GPU], bundle, 2, spread=True) == 0  # one node: room for both, not on two nodes
    assert trials_at_once([NODE_4GPU, NODE_4GPU], bundle, 2, spread=True) == 4
    assert trials_at_once([NODE_4GPU, NODE_4GPU, NODE_CPU], bundle, 3, spread=True) == 0
    assert trials_at_once([DRIVER_ONLY_HEAD], bundle, 2, GPU_POOL, spread=True) == 2
    spec = validate(sharded(tiny_raw, gpus_per_worker=1, placement="spread"))
    with pytest.raises(SpecError) as e:
        fit_to_cluster(spec, nodes=[NODE_4GPU, NODE_CPU])
    (_, message), = e.value.problems
    assert "(spread)" in message and "has 1 node that holds one, and spread puts each on its own" in message
