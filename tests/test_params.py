"""params.yaml -> PipelineConfig: presets written out in full, the data root, and one-line errors naming the
bad preset, section or key."""
import json
from pathlib import Path

import pytest

from shortrun.cli import main
from shortrun.errors import ConfigError
from shortrun.params import (DATA_ENV, build_config, corpus_file, corpus_root, data_root, load_config, preset_params,
                             read_params, resolve_data_path, write_params)
from shortrun.presets import PRESETS
from tests.workspace import copy_project, dvc, entered

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
    with pytest.raises(ConfigError, match=r"^export\.langevin: .*steps: Input should be greater than 0"):
        build_config("tiny", {"export": {"langevin": {"steps": 0}}})
    with pytest.raises(ConfigError, match=r"^export\.langevin: .*stepz is not a langevin key"):
        build_config("tiny", {"export": {"langevin": {"stepz": 5}}})
    assert "temperature" not in build_config("yelp").export.langevin  # only what differs is written
    assert build_config("tiny", {"export": {"langevin": None}}).export_langevin == build_config("tiny").langevin


def test_cli_reports_a_bad_params_value_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text('preset: tiny\ntrain:\n  epochs: "abc"\n')
    assert main(["stage", "prepare"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("shortrun: error: train.epochs:") and "\n" not in err


def test_data_root_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    assert data_root() == tmp_path.resolve()


REGENERATE = "shortrun params --preset {preset}"


def test_committed_params_are_their_preset_written_out_in_full():
    committed = read_params(REPO / "params.yaml")
    preset, root = committed["preset"], committed["data"]["root"]
    rendered = preset_params(preset, root)
    have, want = _leaves(committed), _leaves(rendered)
    differ = sorted(key for key in have.keys() | want.keys() if have.get(key, "<missing>") != want.get(key, "<missing>"))
    assert committed == rendered, (
        f"params.yaml is not preset {preset!r} written out in full (differs at {differ}); "
        f"regenerate it with `{REGENERATE.format(preset=preset)}`")
    assert not Path(root).is_absolute(), "params.yaml: data.root must be relative to the checkout, not a machine's path"


def test_choosing_a_preset_writes_every_value_and_keeps_the_data_root(tmp_path, monkeypatch):
    monkeypatch.delenv(DATA_ENV, raising=False)
    corpora = tmp_path / "corpora"
    corpora.mkdir()
    path = tmp_path / "params.yaml"
    path.write_text("# header\npreset: tiny\ndata:\n  root: corpora\n  max_train: 50\n")
    cfg = write_params("ptb", ["train.epochs=3"], path)
    written = read_params(path)
    assert path.read_text().startswith("# header\npreset: ptb\n")
    assert written == {**preset_params("ptb", "corpora"), "train": {**preset_params("ptb", "corpora")["train"], "epochs": 3}}
    assert cfg.data.max_train is None and cfg.train.epochs == 3 and cfg.data.root == "corpora"


def test_shortrun_data_is_written_into_params_not_applied_behind_their_back(tmp_path, monkeypatch, capsys):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    path = tmp_path / "params.yaml"
    path.write_text("preset: tiny\ndata:\n  root: /nowhere\n")
    monkeypatch.setenv(DATA_ENV, str(elsewhere))
    with pytest.raises(ConfigError, match=r"^data\.root: params\.yaml reads corpora from /nowhere, but SHORTRUN_DATA="):
        corpus_root(load_config(path).data, tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["params"]) == 0
    assert read_params(path)["data"]["root"] == str(elsewhere)
    assert corpus_root(load_config(path).data, tmp_path) == elsewhere


def test_a_missing_data_root_is_named(tmp_path, monkeypatch):
    monkeypatch.delenv(DATA_ENV, raising=False)
    path = tmp_path / "params.yaml"
    path.write_text("preset: tiny\n")
    with pytest.raises(ConfigError, match=r"^data\.root: nope: folder not found"):
        write_params(None, [], path, root="nope")
    assert path.read_text() == "preset: tiny\n"


def test_corpus_files_outside_the_tracked_corpus_folder_are_refused(tmp_path):
    data = build_config("tiny", {"data": {"root": str(tmp_path), "test_file": "ptb/ptb.test.txt"}}).data
    with pytest.raises(ConfigError, match=r"^data\.test_file: .*ptb\.test\.txt is outside .*short_yelp, the corpus folder DVC tracks"):
        corpus_file(data, data.test_file, tmp_path, "data.test_file")
    assert corpus_file(data, data.train_file, tmp_path, "data.train_file") == tmp_path / data.train_file


@pytest.mark.slow
def test_dvc_params_diff_lists_every_value_a_preset_change_changes(tmp_path):
    with entered(copy_project(tmp_path, preset="tiny")):
        write_params("ptb-cpu", ["langevin.steps=7"])
        diff = json.loads(dvc("params", "diff", "--json", cwd=tmp_path))["params.yaml"]
    before, after = _leaves(preset_params("tiny", "r")), _leaves(preset_params("ptb-cpu", "r"))
    after["langevin.steps"] = 7
    changed = {key for key in before.keys() | after.keys() if before.get(key) != after.get(key)}
    assert {"preset", "langevin.steps", "data.corpus", "data.train_file", "model.hidden_dim", "train.epochs"} <= changed
    assert set(diff) == changed
    assert (diff["langevin.steps"]["old"], diff["langevin.steps"]["new"]) == (5, 7)
    assert (diff["data.corpus"]["old"], diff["data.corpus"]["new"]) == ("short_yelp", "ptb")


def _leaves(params: dict, prefix: str = "") -> dict:
    """{'section.key': value} for every non-mapping value, as `dvc params diff` names them (an empty mapping has none)."""
    leaves = {}
    for key, value in params.items():
        if isinstance(value, dict):
            leaves.update(_leaves(value, f"{prefix}{key}."))
        else:
            leaves[f"{prefix}{key}"] = value
    return leaves


def test_a_data_root_override_is_written(tmp_path, monkeypatch):
    monkeypatch.delenv(DATA_ENV, raising=False)
    (tmp_path / "mine").mkdir()
    path = tmp_path / "params.yaml"
    path.write_text("preset: tiny\n")
    assert write_params(None, ["data.root=mine"], path).data.root == "mine"
