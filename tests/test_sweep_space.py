"""A sweep's pure part: its config and search space, the trials it plans, the choice of the best trial, the report."""
from __future__ import annotations

from pathlib import Path

import pytest

from shortrun.errors import ConfigError
from shortrun.params import read_params
from shortrun.sweep import (
    Trial,
    TrialResult,
    build_sweep,
    check_trials,
    choose,
    is_test_metric,
    load_sweep_file,
    parse_grid,
    parse_random,
    plan_trials,
)
from shortrun.sweep_report import report_markdown

ROOT = Path(__file__).resolve().parents[1]
METRIC = "train.sri.best_valid_nll"


def sweep(**raw):
    return build_sweep({"name": "s", "metric": METRIC, **raw})


def test_grid_runs_every_combination_in_order_and_budget_keeps_the_first():
    cfg = sweep(grid={"langevin.steps": [5, 10], "train.models": [["sri"], ["sri", "vae"]]}, fixed=["train.epochs=1"])
    trials = plan_trials(cfg)
    assert [t.overrides for t in trials] == [
        ["train.epochs=1", "langevin.steps=5", "train.models=[sri]"],
        ["train.epochs=1", "langevin.steps=5", "train.models=[sri, vae]"],
        ["train.epochs=1", "langevin.steps=10", "train.models=[sri]"],
        ["train.epochs=1", "langevin.steps=10", "train.models=[sri, vae]"],
    ]
    assert len({t.key for t in trials}) == 4
    assert [t.overrides for t in plan_trials(sweep(grid=cfg.grid, fixed=cfg.fixed, budget=2))] == \
        [t.overrides for t in trials[:2]]


def test_random_draws_are_deterministic_by_seed_and_within_bounds():
    space = {"random": {"langevin.step_size": "loguniform(0.1, 1)", "langevin.temperature": "uniform(0.1, 0.3)",
                        "train.epochs": "randint(1, 3)"}, "grid": {"langevin.steps": [5, 10, 20]}, "budget": 6}
    first, again, other = (plan_trials(sweep(seed=seed, **space)) for seed in (0, 0, 1))
    assert [t.overrides for t in first] == [t.overrides for t in again]
    assert [t.overrides for t in first] != [t.overrides for t in other]
    assert len(first) == 6
    for trial in first:
        settings = dict(trial.settings)
        assert 0.1 <= settings["langevin.step_size"] <= 1 and 0.1 <= settings["langevin.temperature"] <= 0.3
        assert settings["train.epochs"] in (1, 2, 3) and settings["langevin.steps"] in (5, 10, 20)


def test_repeated_random_draws_are_one_trial():
    trials = plan_trials(sweep(random={"train.epochs": "choice(1, 2)"}, budget=10))
    assert sorted(dict(t.settings)["train.epochs"] for t in trials) == [1, 2]


def test_command_line_space_parses_values_and_lists():
    assert parse_grid(["langevin.steps=5,10", "train.models=[sri],[sri, vae]"]) == {
        "langevin.steps": [5, 10], "train.models": [["sri"], ["sri", "vae"]]}
    assert parse_random(["langevin.step_size=loguniform(0.1,1)"]) == {"langevin.step_size": "loguniform(0.1,1)"}
    with pytest.raises(ConfigError, match=r"^--grid 'langevin.steps': expected key=values"):
        parse_grid(["langevin.steps"])


@pytest.mark.parametrize("raw, message", [
    ({"grid": {"langevin.steps": [5]}, "metric": "evaluate.sri.test_nll"}, r"metric evaluate.sri.test_nll: a test metric"),
    ({"grid": {"langevin.steps": [5]}, "metric": "evaluate.sri.nll"}, r"metric evaluate.sri.nll: not a validation metric"),
    ({"random": {"langevin.step_size": "normal(0, 1)"}, "budget": 2}, r"random.langevin.step_size: 'normal\(0, 1\)' is not a distribution"),
    ({"random": {"langevin.step_size": "loguniform(0, 1)"}, "budget": 2}, r"random.langevin.step_size: .*both positive"),
    ({"random": {"langevin.step_size": "uniform(0.1, 1)"}}, r"budget: method random needs a number of trials"),
    ({"method": "grid", "grid": {"langevin.steps": [5]}, "random": {"langevin.step_size": "uniform(0.1, 1)"}},
     r"random.langevin.step_size: method grid takes lists only"),
    ({"grid": {"langevin.steps": []}}, r"grid.langevin.steps: no values"),
    ({"grid": {"lanjevin.steps": [5]}}, r"override 'lanjevin.steps': not a param"),
    ({"grid": {"langevin.steps": [5]}, "budgett": 3}, r"budgett: Extra inputs are not permitted"),
    ({}, r"search space: empty"),
])
def test_bad_sweeps_are_one_line_naming_the_key(raw, message):
    with pytest.raises(ConfigError, match=message):
        build_sweep({"name": "s", "metric": METRIC, **raw})


def test_every_trial_is_validated_as_params_naming_trial_and_key():
    params = read_params(ROOT / "params.yaml")
    check_trials(plan_trials(sweep(grid={"langevin.steps": [5, 10]})), params)
    with pytest.raises(ConfigError, match=r"^trial 2 \(langevin.stepz=10\): langevin.stepz: Extra inputs"):
        check_trials([Trial((("langevin.steps", 5),), None, ()), Trial((("langevin.stepz", 10),), None, ())], params)
    with pytest.raises(ConfigError, match=r"^trial 1 \(train.epochs=0\): train.epochs: "):
        check_trials(plan_trials(sweep(grid={"train.epochs": [0]})), params)


def test_the_repositorys_sweep_file_loads_and_its_trials_are_valid_params(tmp_path):
    cfg = load_sweep_file(ROOT / "sweeps" / "chain.yaml")
    assert cfg.name == "chain" and cfg.method == "random" and cfg.direction == "minimize"
    trials = plan_trials(cfg)
    assert len(trials) == cfg.budget
    check_trials(trials, read_params(ROOT / "params.yaml"))
    assert load_sweep_file(ROOT / "sweeps" / "chain.yaml", budget=2, name="short").budget == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"metric: {METRIC}\ngrid: {{langevin.steps: [5]}}\nmetod: grid\n")
    with pytest.raises(ConfigError, match=rf"^{bad}: metod: Extra inputs are not permitted"):
        load_sweep_file(bad)


def result(steps: int, metric: float | None, status: str = "finished") -> TrialResult:
    return TrialResult(Trial((("langevin.steps", steps),), None, ()), status, metric)


def test_choose_follows_the_direction_and_ignores_failed_and_missing_metrics():
    results = [result(5, 4.0), result(10, 3.0), result(20, 1.0, "failed"), result(40, float("nan"))]
    assert choose(results, "minimize") is results[1]
    assert choose(results, "maximize") is results[0]
    assert choose([result(5, None, "failed")], "minimize") is None


def test_report_shows_every_trial_and_test_numbers_for_the_chosen_one_only():
    cfg = sweep(grid={"langevin.steps": [5, 10, 20]})
    results = [result(5, 4.0), result(10, 3.0), result(20, None, "failed")]
    results[2].error = "exit 2: stage train@sri: diverged"
    text = report_markdown(cfg, results, results[1], {"evaluate.sri.nll": 98.7}, "abc")
    rows = [line for line in text.splitlines() if line.startswith(f"| {results[0].trial.key[:4]}")
            or line.startswith("| " + results[1].trial.key) or line.startswith("| " + results[2].trial.key)]
    assert len(rows) == 3
    assert "**(chosen)**" in rows[1] and "| 3 |" in rows[1]
    assert "failed: exit 2: stage train@sri: diverged" in rows[2]
    assert text.count("98.7") == 1 and "Test numbers of the chosen trial only" in text


def test_test_numbers_are_the_evaluate_likelihoods_and_test_accuracies_not_data_counts():
    names = ["evaluate.sri.nll", "evaluate.vae.ppl", "classify.budgets.100.test_acc_mean", "evaluate.sri.kl",
             "prepare.splits.test.sentences", "train.sri.best_valid_nll"]
    assert [n for n in names if is_test_metric(n)] == names[:3]
