"""params.yaml -> PipelineConfig: presets, and one-line errors naming the bad preset, section or key."""
from pathlib import Path

import pytest

from shortrun.cli import main
from shortrun.errors import ConfigError
from shortrun.params import DATA_ENV, build_config, data_root, load_config, resolve_data_path
from shortrun.presets import PRESETS

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_is_valid_and_its_corpus_files_exist(preset):
    cfg = build_config(preset)
    root = data_root(REPO)
    data = cfg.data
    for rel in [data.train_file, data.valid_file, data.test_file, *data.label_budget_files.values()]:
        assert resolve_data_path(rel, root).is_file(), rel
    if data.vocab_file:
        assert resolve_data_path(data.vocab_file, root).is_file()


def test_unknown_preset_names_the_choices():
    with pytest.raises(ConfigError, match=r"^preset: unknown preset 'huge'; expected one of tiny, yelp, ptb"):
        build_config("huge")


def test_wrong_type_names_the_key():
    with pytest.raises(ConfigError, match=r"^train\.epochs: .*\(got 'abc'\)$"):
        build_config("tiny", {"train": {"epochs": "abc"}})


def test_unknown_section_is_named():
    with pytest.raises(ConfigError, match=r"^trian: not a params section; expected one of data, model"):
        build_config("tiny", {"trian": {"epochs": 1}})


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match=r"^data\.max_vocabulary: "):
        build_config("tiny", {"data": {"max_vocabulary": 10}})


def test_wrong_malformed_policy_is_named():
    with pytest.raises(ConfigError, match=r"^data\.on_malformed: .*'ignore'"):
        build_config("tiny", {"data": {"on_malformed": "ignore"}})


def test_params_file_values_override_the_preset(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("preset: tiny\ndata:\n  max_train: 50\n  on_malformed: skip\n")
    cfg = load_config(path)
    assert cfg.data.max_train == 50 and cfg.data.on_malformed == "skip"
    assert cfg.data.max_valid == PRESETS["tiny"]["data"]["max_valid"]


def test_export_chain_inherits_the_training_chain_keys_it_does_not_set():
    cfg = build_config("tiny", {"langevin": {"temperature": 0.3},
                                "export": {"langevin": {"steps": 40, "schedule": "constant", "noise": False}}})
    chain = cfg.export_langevin
    assert (chain.steps, chain.schedule, chain.noise, chain.temperature) == (40, "constant", False, 0.3)
    assert cfg.langevin.steps == PRESETS["tiny"]["langevin"]["steps"] and cfg.langevin.noise
    assert build_config("tiny").export_langevin == build_config("tiny").langevin
    with pytest.raises(ConfigError, match=r"^export\.langevin\.steps: "):
        build_config("tiny", {"export": {"langevin": {"steps": 0}}})


def test_cli_reports_a_bad_params_value_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text('preset: tiny\ntrain:\n  epochs: "abc"\n')
    assert main(["stage", "prepare"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("shortrun: error: train.epochs:") and "\n" not in err


def test_data_root_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    assert data_root() == tmp_path.resolve()
