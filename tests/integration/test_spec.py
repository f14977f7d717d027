"""Study specs: named and path specs load, overrides apply, and every bad key or value fails
before Ray."""

from __future__ import annotations

from pathlib import Path

import pytest

from study.spec import Arm, load_spec, spec_names


def test_named_specs_load_with_their_arms():
    assert {"quick", "paper"} <= set(spec_names())
    quick = load_spec("quick")
    assert quick.dataset == "digits" and quick.models == ["seed_cnn", "vgg11"]
    assert Arm("vgg11", "greedy") in quick.arms and len(quick.arms) == 6
    paper = load_spec("paper")
    assert paper.dataset == "cifar100" and paper.budget.epochs == 300 and paper.resources.gpu > 0
    assert set(paper.models) == {"seed_cnn", "vgg16", "resnext", "densenet"}
    assert "[budget]" in quick.source  # the file's text travels with the spec (logged as spec.toml)


def test_every_named_spec_sets_its_margin_and_says_why():
    for name in spec_names():
        lines = load_spec(name).source.splitlines()
        [index] = [i for i, line in enumerate(lines) if line.startswith("margin = ")]
        assert lines[index - 1].startswith("# "), name  # the reason, just above
        assert "test images" in "\n".join(lines[index - 3 : index]), name  # what a point is


def test_path_spec_and_dotted_overrides(tmp_path: Path):
    path = tmp_path / "mine.toml"
    path.write_text(
        'name = "mine"\nmodels = ["seed_cnn"]\nmethods = ["standard"]\n[budget]\nepochs = 4\n'
    )
    spec = load_spec(
        path,
        [
            "budget.max_trials=8",
            "fixed.width=0.5",
            'methods=["standard","greedy"]',
            "fixed.greedy.aux_k=2",
        ],
    )
    assert spec.name == "mine" and spec.budget.epochs == 4 and spec.budget.max_trials == 8
    assert spec.methods == ["standard", "greedy"]
    assert spec.pinned("greedy") == {"width": 0.5, "aux_k": 2}
    assert spec.pinned("standard") == {"width": 0.5}
    assert spec.budget.search_epochs == 4 * 8  # unset: every trial of the cap at the full budget


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"colour": "red"}, "unknown spec key(s) colour; valid keys: budget, dataset"),
        (
            {"budget": {"epoch": 3}},
            "unknown spec key(s) budget.epoch; valid keys in budget: early_stopping, epochs",
        ),
        ({"search": {"sampler": "tpe"}}, "search.sampler"),
        ({"fixed": {"lerning_rate": 0.1}}, "unknown key fixed.lerning_rate; valid keys: amp"),
        ({"fixed": {"epochs": 3}}, "unknown key fixed.epochs"),  # the budget owns epochs
        ({"models": ["resnet99"]}, "models='resnet99' is not valid; choose one of: densenet"),
        (
            {"methods": ["backprop"]},
            "methods='backprop' is not valid; choose one of: standard, layer_to_layer, greedy",
        ),
        (
            {"dataset": "mnist"},
            "dataset='mnist' is not valid; choose one of: digits, fashion_mnist, cifar10, "
            "cifar100, synthetic",
        ),
        ({"models": []}, "models=[] must be a non-empty list"),
        (
            {"budget": {"grace_period": 5}},
            "budget.grace_period=5 is out of range; valid range: (0.0, 2]",
        ),
        ({"budget": {"unit": "joules"}}, "budget.unit='joules' is not valid; choose one of: flops"),
        (
            {"budget": {"unit": "epochs", "epochs": 2.5}},
            "budget.epochs=2.5 must be a whole number with budget.unit=epochs",
        ),
        ({"resources": {"cpu": 0}}, "resources.cpu=0 is out of range"),
        ({"fixed": {"layer_to_layer": {"split_ratio": 1.5}}}, "split_ratio=1.5 is out of range"),
        ({"fixed": {"greedy": {"warp": 1}}}, "unknown parameter(s) warp for method 'greedy'"),
        (
            {"report": {"target_val_acc": 1.5}},
            "report.target_val_acc=1.5 is out of range; valid range: (0.0, 1.0]",
        ),
        (
            {"report": {"target_val_acc": {"vgg11": 0.9}}},
            "report.target_val_acc.<model>='vgg11' is not valid; choose one of: seed_cnn",
        ),
        ({"report": {"alpha": 0}}, "report.alpha=0 is out of range"),
        ({"report": {"margin": 0}}, "report.margin=0 is out of range; valid range: (0.0, 100.0)"),
        (
            {"fixed": {"greedy": {"lr": 0.01}}},
            "fixed.greedy.lr pins a shared knob for one arm only; every arm searches "
            "it alike: pin it for all arms as fixed.lr",
        ),
        (
            {"fixed": {"standard": {"anneal_frac": 0.5}}},
            "fixed.standard.anneal_frac pins a shared knob",
        ),
        (
            {"budget": {"search_epochs": 1}},
            "budget.search_epochs=1 is out of range; valid range: [2, inf]",
        ),
        (
            {"budget": {"max_concurrent": "all"}},
            "budget.max_concurrent='all' is not valid; give \"auto\" or a whole",
        ),
        ({"budget": {"max_concurrent": 0}}, "budget.max_concurrent=0 is out of range"),
        (
            {"resources": {"workers": 0}},
            "resources.workers=0 is not valid; give a whole number >= 1",
        ),
        ({"resources": {"workers": 1.5}}, "resources.workers=1.5 is not valid"),
        (
            {"methods": ["backprop:control"]},
            "methods='backprop' is not valid; choose one of: standard, layer_to_layer, greedy",
        ),
        (
            {"methods": ["standard", "standard:"]},
            "methods='standard:' is not a valid control arm label; write <method>:<name>",
        ),
        ({"methods": ["standard", "standard:a b"]}, "not a valid control arm label"),
        (
            {"methods": ["standard", "greedy", "standard"]},
            "methods lists 'standard' more than once; give a second arm of a method its own "
            "label, e.g. 'standard:control'",
        ),
        ({"budget": {"studies": 0}}, "budget.studies=0 is out of range; valid range: [1, inf]"),
        ({"budget": {"studies": 1.5}}, "budget.studies=1.5 is not valid; give a whole number"),
        ({"budget": {"seeds": 1000}}, "budget.seeds=1000 is out of range; valid range: [0, 999]"),
        ({"budget": {"equal_time": "yes"}}, "budget.equal_time='yes' is not valid; give true"),
    ],
)
def test_bad_specs_name_the_key_and_the_valid_choices(tiny_spec, overrides, message):
    with pytest.raises(ValueError) as err:
        tiny_spec(**{"methods": ["standard", "layer_to_layer", "greedy"], **overrides})
    assert message in str(err.value)


def test_unknown_spec_name_and_bad_override():
    with pytest.raises(ValueError, match="neither a named spec .*quick.* nor a .toml file"):
        load_spec("quik")
    with pytest.raises(ValueError, match="expects SECTION.KEY=VALUE"):
        load_spec("quick", ["budget.max_trials"])
    with pytest.raises(ValueError, match="unknown spec key.*budget.max_trails"):
        load_spec("quick", ["budget.max_trails=3"])


def test_train_config_of_an_arm_applies_fixed_values(tiny_spec):
    spec = tiny_spec(fixed={"layer_to_layer": {"aux": "conv"}})
    config = spec.train_config("seed_cnn", "layer_to_layer")
    assert config.width == 0.125 and config.epochs == 2 and config.params == {"aux": "conv"}
    assert config.budget_unit == "flops"  # the spec's budget.unit, given to every trial
    assert spec.train_config("seed_cnn", "standard", seed=3).seed == 3
    whole = tiny_spec(budget={"unit": "epochs"}).train_config("seed_cnn", "standard")
    assert whole.budget_unit == "epochs"


def test_cluster_example_has_a_head_and_a_gpu_worker_type():
    import yaml

    from study.spec import SPEC_DIR

    config = yaml.safe_load((SPEC_DIR / "cluster-example.yaml").read_text())
    types = config["available_node_types"]
    assert config["head_node_type"] in types
    workers = [t for name, t in types.items() if name != config["head_node_type"]]
    assert workers and all(
        t["max_workers"] >= 1 and "InstanceType" in t["node_config"] for t in workers
    )


def test_report_targets_per_model(tiny_spec):
    assert (
        tiny_spec().report.targets(["seed_cnn"]) == {}
    )  # unset: the report's default (standard's median - tol)
    assert tiny_spec(report={"target_val_acc": 0.9}).report.targets(["seed_cnn", "vgg11"]) == {
        "seed_cnn": 0.9,
        "vgg11": 0.9,
    }
    assert tiny_spec(report={"target_val_acc": {"seed_cnn": 0.8}}).report.targets(["seed_cnn"]) == {
        "seed_cnn": 0.8
    }


def test_cluster_example_installs_pyproject_and_keeps_the_dashboard_local():
    import yaml

    from study.spec import SPEC_DIR

    config = yaml.safe_load((SPEC_DIR / "cluster-example.yaml").read_text())
    assert (
        config["file_mounts"]["~/l2l-study"] == "."
    )  # the repository, so pyproject.toml is the package list
    installs = [c for c in config["setup_commands"] if "pip install" in c]
    assert installs and all(
        "~/l2l-study" in c and "==" not in c for c in installs
    )  # no hand-kept pins
    starts = " ".join(config["head_start_ray_commands"] + config["worker_start_ray_commands"])
    assert "0.0.0.0" not in starts and "--dashboard-host=127.0.0.1" in starts
    assert starts.count("RAY_AUTH_MODE=token ray start") == 2


def test_control_arms_and_studies_draw_from_streams_of_their_own(tiny_spec):
    spec = tiny_spec(
        methods=["standard", "layer_to_layer", "standard:control"],
        budget={"studies": 2},
        search={"sampler_seed": 7, "trial_seed": 0},
    )
    control = Arm("seed_cnn", "standard:control")
    assert (control.method, control.name, control.slug, control.is_control) == (
        "standard",
        "seed_cnn/standard:control",
        "seed_cnn-standard-control",
        True,
    )
    assert control in spec.arms and len(spec.searches()) == 3 * 2
    standard, l2l = Arm("seed_cnn", "standard"), Arm("seed_cnn", "layer_to_layer")
    # stream = position among the method's labels x studies + study
    assert [spec.sampler_seed(a, k) for a in (standard, control) for k in (0, 1)] == [7, 8, 9, 10]
    assert [spec.sampler_seed(l2l, k) for k in (0, 1)] == [7, 8]  # paired with standard's
    assert [spec.seed_number(control, k, 2) for k in (0, 1)] == [2002, 3002]
    assert spec.seed_number(standard, 0, 2) == spec.seed_number(l2l, 0, 2) == 2
    assert spec.search_seed(control, 1) == 3000
    assert spec.search_name(control, 1) == "seed_cnn-standard-control-study1"
    assert (spec.pair(1, 2), tiny_spec().pair(0, 2)) == ("1:2", "2")
