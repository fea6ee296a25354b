"""DVC sees every input: each stage depends on the code it runs, the params it reads and the corpus files,
and a changed value or corpus byte makes exactly the stages that read it stale (real `dvc` commands)."""
from __future__ import annotations

import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest
import yaml
from dvc.repo import Repo

from shortrun.data.prepared import LABELED_DIR, SPLITS, VOCAB_FILE
from shortrun.params import PARAMS_FILE, data_root, dump_params, read_params, write_params
from shortrun.paths import PREPARED, PREPARED_PARTS
from tests.stage_code import stage_code
from tests.workspace import commit_placeholders, copy_project, dvc, entered

ROOT = Path(__file__).resolve().parents[1]
CODE_DIRS = ("shortrun/", "tasks/")
# Sections read outside the DVC stages: the flow's registration step reads `registry`.
READ_BY_THE_FLOW = ("registry",)
TRAIN = {"train@sri", "train@vae", "train@lm"}


def _stages() -> dict[str, tuple[set[str], set[str]]]:
    """{stage: (code deps, params keys)} as DVC resolves dvc.yaml in the project."""
    with Repo(str(ROOT)) as repo:
        return {stage.addressing: ({dep.def_path for dep in stage.deps if dep.def_path.startswith(CODE_DIRS)},
                                   {key for dep in stage.deps if hasattr(dep, "params") for key in dep.params})
                for stage in repo.index.stages}


def test_each_stage_depends_on_exactly_the_code_it_imports():
    for name, (code, _) in _stages().items():
        expected = stage_code(name.split("@")[0])
        assert code == expected, (
            f"dvc.yaml stage {name}: code deps differ from what `shortrun stage` imports; "
            f"missing {sorted(expected - code)}, not imported {sorted(code - expected)} "
            "(`python -m tests.stage_code --write` rewrites dvc.yaml's code deps to match)")


def test_prepare_writes_each_prepared_part_as_a_dvc_output_of_its_own():
    """The parts the library writes, the parts the flow tags and prepare's outputs in dvc.yaml are one list."""
    with Repo(str(ROOT)) as repo:
        (prepare,) = [stage for stage in repo.index.stages if stage.addressing == "prepare"]
        outs = [out.def_path for out in prepare.outs if out.def_path.startswith(PREPARED.as_posix())]
    assert outs == [(PREPARED / part).as_posix() for part in PREPARED_PARTS]
    assert PREPARED_PARTS == (VOCAB_FILE, *SPLITS, LABELED_DIR)


def test_every_params_section_is_read_by_some_stage():
    read = {key.split(".")[0] for _, keys in _stages().values() for key in keys}
    unread = set(read_params(ROOT / PARAMS_FILE)) - read - set(READ_BY_THE_FLOW)
    assert not unread, f"params {sorted(unread)} are no stage's dependency in dvc.yaml: DVC would not see them change"


@contextmanager
def _placeholder_workspace(tmp_path_factory) -> Iterator[tuple[Path, Path]]:
    """A tiny-preset workspace reading its own copy of the short-Yelp corpus, every stage recorded as up to
    date with placeholder outputs (nothing runs), so `dvc status` shows what a change makes stale."""
    corpora = tmp_path_factory.mktemp("corpora")
    shutil.copytree(data_root(ROOT) / "short_yelp", corpora / "short_yelp")
    (corpora / "short_yelp").chmod(0o755)  # the shared corpora are read-only; this copy is changed byte by byte
    for path in (corpora / "short_yelp").iterdir():
        path.chmod(0o644)
    dest = copy_project(tmp_path_factory.mktemp("workspace"), preset="tiny")
    with entered(dest), pytest.MonkeyPatch.context() as patch:
        patch.setenv("SHORTRUN_DATA", str(corpora))  # as a user pointing elsewhere; `write_params` records it
        write_params(None, [])
        commit_placeholders(dest)
        yield dest, corpora / "short_yelp"


@pytest.fixture(scope="module")
def placeholders(tmp_path_factory):
    with _placeholder_workspace(tmp_path_factory) as found:
        yield found


def _stale(workspace: Path) -> set[str]:
    """The stages `dvc status` reports (DVC's own API in this process: the command without its start-up time)."""
    with Repo(str(workspace)) as repo:
        return set(repo.status())


@pytest.mark.slow
@pytest.mark.parametrize(("key", "value", "stale"), [
    ("langevin.steps", 7, {"train@sri", "export@sri", "evaluate"}),
    ("train.lr", 0.002, TRAIN),
    ("model.latent_dim", 4, TRAIN),
    ("data.max_len", 30, {"prepare", *TRAIN, "evaluate"}),
    ("export.langevin", {"steps": 9}, {"export@sri"}),
    ("export.batch_size", 64, {"export@sri", "export@vae"}),
    ("classify.seeds", 3, {"classify"}),
    ("evaluate.seed", 1, {"evaluate"}),
    ("registry.generator_name", "other", set()),
])
def test_changing_a_value_makes_exactly_its_readers_stale(placeholders, key, value, stale):
    workspace, _ = placeholders
    path = workspace / PARAMS_FILE
    original = path.read_text()
    try:
        params = yaml.safe_load(original)
        section, name = key.split(".")
        params[section][name] = value
        path.write_text(dump_params(params))
        assert _stale(workspace) == stale
    finally:
        path.write_text(original)


def _flip_a_letter(path: Path) -> None:
    """Change one letter of the first line's text (after its label, if any): the file stays valid."""
    data = bytearray(path.read_bytes())
    first_line = data[:data.index(b"\n")]
    start = first_line.index(b"\t") + 1 if b"\t" in first_line else 0
    at = next(i for i in range(start, len(first_line)) if chr(data[i]).isalpha())
    data[at] = ord("q") if data[at] != ord("q") else ord("z")
    path.write_bytes(bytes(data))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["short_yelp.train.10000.txt", "short_yelp.valid.txt", "short_yelp.test.txt",
                                  "short_yelp.train.100.txt", "vocab.txt"])
def test_one_changed_corpus_byte_makes_prepare_stale(placeholders, name):
    workspace, corpus = placeholders
    path = corpus / name
    original = path.read_bytes()
    try:
        _flip_a_letter(path)
        assert path.read_bytes() != original
        assert _stale(workspace) == {"prepare"}
    finally:
        path.write_bytes(original)


@pytest.mark.slow
def test_dvc_repro_after_a_test_file_change_reruns_prepare_and_leaves_only_the_test_readers_stale(tmp_path_factory):
    """Training reads vocab, train and valid only: a changed test sentence leaves every model up to date."""
    with _placeholder_workspace(tmp_path_factory) as (workspace, corpus):
        _flip_a_letter(corpus / "short_yelp.test.txt")
        out = dvc("repro", "--single-item", "prepare", cwd=workspace)
        assert "Running stage 'prepare'" in out
        assert _stale(workspace) == {"export@sri", "export@vae", "evaluate"}


def test_dvc_repro_after_a_training_file_change_leaves_every_reader_of_train_stale(tmp_path_factory):
    with _placeholder_workspace(tmp_path_factory) as (workspace, corpus):
        _flip_a_letter(corpus / "short_yelp.train.10000.txt")
        dvc("repro", "--single-item", "prepare", cwd=workspace)
        assert _stale(workspace) == {*TRAIN, "export@sri", "export@vae"}


def test_the_experiment_table_shows_only_the_headline_metrics():
    """`dvc exp show` makes a column of every number in every DVC metrics file: only the headline is one, and it is
    cached so each experiment's values are found (measured: two `langevin.steps` experiments of the tiny preset
    give a 172-column `dvc exp show --only-changed` at COLUMNS=200, the setting beside NLL, AU and accuracy)."""
    with Repo(str(ROOT)) as repo:
        metrics = [(out.def_path, out.use_cache) for out in repo.index.outs if out.metric]
    assert metrics == [("metrics/headline.json", True)]
