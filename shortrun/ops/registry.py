"""MLflow Model Registry bookkeeping: the promotion gate, aliases and tags of registered versions.

Every registered version gets the alias `candidate`. The alias `champion` moves to it only when the
gate says so; the decision and the reason are written to the version's tags (`gate.*`,
`validation_status`). The gate compares like with like: a version is compared with the champion only
when the tags of its `Gate.identity` (e.g. vocabulary and validation sentences) equal the champion's;
otherwise it is refused, saying which tag differs. A classifier's champion follows its generator's
(`decide_with_generator`), so the champion generator and classifiers always form a pair.

A `Release` registers several versions as one: all of them are kept or none, and their champion
aliases move together at the end. Registering the same model files twice (a re-run with nothing
changed) returns the existing version instead of adding a copy. What is registered, and from which
files, is the registration step's business (`tasks/register.py`); this module knows only the registry.
"""
from __future__ import annotations

import math
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from shortrun.errors import ShortrunError

CANDIDATE = "candidate"
CHAMPION = "champion"
SOURCE_TAG = "dvc_md5"  # content hash of the registered files: the same files are registered once
GENERATOR_TAG = "generator"  # a classifier version: the registered generator whose latents it was fit on ...
GENERATOR_VERSION_TAG = "generator_version"  # ... and that generator's version
METRIC_PREFIX = "metrics."  # a version's headline metrics; the champion's are copied to its registered model
MODEL_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))$")


class PairMismatch(ShortrunError):
    """A classifier loaded with a generator version other than the one whose latents it was fit on."""


@dataclass(frozen=True)
class Gate:
    """What a version is judged on: one number, its direction, and the tags that make two versions comparable."""

    metric: str
    value: float
    lower_is_better: bool = True
    identity: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class GateDecision:
    """Whether a new version becomes champion, and why."""

    promote: bool
    reason: str


@dataclass(frozen=True)
class Registration:
    """One registered model version and what the gate decided for it."""

    name: str
    version: str
    promoted: bool
    reason: str
    new: bool = True
    gate_metric: str = ""  # what the gate compared (e.g. heldout_nll, on validation sentences) and its value
    gate_value: float | None = None


def champion_of(client: MlflowClient, name: str) -> ModelVersion | None:
    """The version the `champion` alias points at, or None."""
    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


def decide(client: MlflowClient, name: str, gate: Gate, source_md5: str | None = None) -> GateDecision:
    """Compare a new version's gate value with the current champion's.

    A version built from the champion's own files (same `source_md5`) replaces it: only its settings
    changed (e.g. how a generator encodes), and they must follow the pipeline's current config. A
    champion whose identity tags differ from `gate.identity` was judged on something else: refused.
    """
    metric, value = gate.metric, gate.value
    if not math.isfinite(value):
        return GateDecision(False, f"{metric} is {value}; a non-finite metric is never promoted")
    champion = champion_of(client, name)
    if champion is None:
        return GateDecision(True, f"no champion yet; {metric}={value:.4f}")
    if source_md5 and champion.tags.get(SOURCE_TAG) == source_md5:
        return GateDecision(True, f"same files as champion v{champion.version} ({SOURCE_TAG} {source_md5}), new settings")
    for key, mine in gate.identity.items():
        theirs = champion.tags.get(key)
        if theirs != mine:
            return GateDecision(False, f"not comparable with champion v{champion.version}: {key} is {mine}, "
                                       f"the champion's is {theirs}; the champion stays")
    recorded = champion.tags.get("gate.value") if champion.tags.get("gate.metric") == metric else None
    if recorded is None:
        return GateDecision(True, f"champion v{champion.version} has no recorded {metric}; {metric}={value:.4f}")
    best = float(recorded)
    better = value < best if gate.lower_is_better else value > best
    direction = "lower" if gate.lower_is_better else "higher"
    verdict = "beats" if better else "does not beat"
    return GateDecision(better, f"{metric} {value:.4f} {verdict} champion v{champion.version} ({best:.4f}, {direction} is better)")


def decide_with_generator(client: MlflowClient, name: str, gate: Gate, generator: Registration) -> GateDecision:
    """The gate of a classifier fit on `generator`'s latents: its champion follows the generator's.

    Fit on a generator that is not (becoming) champion: refused. The first classifier fit on the champion
    generator: promoted, whatever its score (the old champion classifier reads other latents). Otherwise
    the usual comparison with the champion classifier fit on the same generator version.
    """
    if not generator.promoted:
        current = champion_of(client, generator.name)
        held = f"v{current.version}" if current else "none"
        return GateDecision(False, f"fit on {generator.name} v{generator.version}, which is not champion ({held})")
    champion = champion_of(client, name)
    if champion is None or champion.tags.get(GENERATOR_VERSION_TAG) != generator.version:
        before = "" if champion is None else f" (champion v{champion.version} was fit on v{champion.tags.get(GENERATOR_VERSION_TAG)})"
        return GateDecision(True, f"moves with champion {generator.name} v{generator.version}{before}")
    return decide(client, name, Gate(gate.metric, gate.value, gate.lower_is_better,
                                     {**gate.identity, GENERATOR_VERSION_TAG: generator.version}))


def already_registered(name: str, source_md5: str | None, settings: Mapping[str, str] | None = None) -> Registration | None:
    """The registration of a version made from the same files (content hash) and, when given, carrying
    the same `settings` tags, if there is one."""
    if not source_md5:
        return None
    query = f"name = '{name}' and tags.{SOURCE_TAG} = '{source_md5}'"
    query += "".join(f" and tags.`{key}` = '{value}'" for key, value in (settings or {}).items())
    try:
        found = MlflowClient().search_model_versions(query)
    except MlflowException:  # the registered model does not exist yet
        return None
    if not found:
        return None
    version = max(found, key=lambda v: int(v.version))
    current = champion_of(MlflowClient(), name)
    value = version.tags.get("gate.value")
    return Registration(name=name, version=str(version.version),
                        promoted=current is not None and str(current.version) == str(version.version),
                        reason=f"unchanged since v{version.version} ({SOURCE_TAG} {source_md5})", new=False,
                        gate_metric=version.tags.get("gate.metric", ""), gate_value=float(value) if value else None)


class Release:
    """Versions registered as one (see `release`): each is created as `candidate`; champions move in `promote`."""

    def __init__(self, client: MlflowClient) -> None:
        self.client = client
        self.created: list[Registration] = []
        self.retired: list[str] = []
        self._previous: dict[str, str | None] = {}

    def register(self, model_uri: str, name: str, gate: Gate, decision: GateDecision, tags: Mapping[str, str],
                 describe: Callable[[str], str], model_description: str, model_tags: Mapping[str, str]) -> Registration:
        """A new version of `name` with the gate's decision in its tags and `describe(version)` as its description;
        the registered model (created if new) gets `model_description` and `model_tags`."""
        self._describe_model(name, model_description, model_tags)
        gate_tags = {
            "gate.metric": gate.metric,
            "gate.value": repr(float(gate.value)),
            "gate.direction": "lower" if gate.lower_is_better else "higher",
            "gate.decision": "promoted" if decision.promote else "refused",
            "gate.reason": decision.reason,
            "validation_status": "passed" if decision.promote else "failed",
        }
        all_tags = {key: str(value) for key, value in {**gate_tags, **gate.identity, **tags}.items()}
        version = str(mlflow.register_model(model_uri, name, tags=all_tags).version)
        registration = Registration(name=name, version=version, promoted=decision.promote, reason=decision.reason,
                                    gate_metric=gate.metric, gate_value=float(gate.value))
        self.created.append(registration)
        self.client.update_model_version(name, version, describe(version))
        self.client.set_registered_model_alias(name, CANDIDATE, version)
        return registration

    def _describe_model(self, name: str, description: str, tags: Mapping[str, str]) -> None:
        try:
            self.client.create_registered_model(name, tags={k: str(v) for k, v in tags.items()}, description=description)
        except MlflowException as err:
            if err.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            self.client.update_registered_model(name, description=description)
            for key, value in tags.items():
                self.client.set_registered_model_tag(name, key, str(value))

    def retire(self, name: str) -> None:
        """At `promote`, take `champion` away from `name`: its champion pairs with a generator that stops being one."""
        self.retired.append(name)

    def promote(self) -> None:
        """Move `champion` to every promoted version, and copy its headline metrics to its registered model."""
        for name in self.retired:
            current = champion_of(self.client, name)
            if current is not None:
                self._previous.setdefault(name, str(current.version))
                self.client.delete_registered_model_alias(name, CHAMPION)
        for registration in self.created:
            if not registration.promoted:
                continue
            current = champion_of(self.client, registration.name)
            self._previous.setdefault(registration.name, None if current is None else str(current.version))
            self.client.set_registered_model_alias(registration.name, CHAMPION, registration.version)
            self._tag_champion(registration)

    def _tag_champion(self, registration: Registration) -> None:
        """The registered model's `champion.*` tags: the champion's version and headline metrics, nothing stale."""
        version = self.client.get_model_version(registration.name, registration.version)
        wanted = {"champion.version": registration.version}
        wanted.update({f"champion.{key[len(METRIC_PREFIX):]}": value for key, value in version.tags.items()
                       if key.startswith(METRIC_PREFIX)})
        for key in self.client.get_registered_model(registration.name).tags:
            if key.startswith("champion.") and key not in wanted:
                self.client.delete_registered_model_tag(registration.name, key)
        for key, value in wanted.items():
            self.client.set_registered_model_tag(registration.name, key, value)

    def roll_back(self) -> None:
        """Put back the champions moved so far and delete every version this release created."""
        for name, version in self._previous.items():
            if version is not None:
                self.client.set_registered_model_alias(name, CHAMPION, version)
        for registration in reversed(self.created):
            self.client.delete_model_version(registration.name, registration.version)


@contextmanager
def release() -> Iterator[Release]:
    """Register versions as one: on any error, nothing of them stays; otherwise champions move together at the end."""
    batch = Release(MlflowClient())
    try:
        yield batch
        batch.promote()
    except BaseException:
        batch.roll_back()
        raise


def resolve(client: MlflowClient, uri: str) -> ModelVersion:
    """The model version behind `models:/<name>@<alias>` or `models:/<name>/<version>`."""
    match = MODEL_URI.match(uri)
    if match is None:
        raise ShortrunError(f"model {uri}: expected models:/<name>@<alias> or models:/<name>/<version>")
    try:
        if match["alias"]:
            return client.get_model_version_by_alias(match["name"], match["alias"])
        return client.get_model_version(match["name"], match["version"])
    except MlflowException as err:
        reason = (str(err).strip().splitlines() or [err.__class__.__name__])[0][:200]
        raise ShortrunError(f"model {uri}: cannot load ({reason})") from None


def check_pair(generator: ModelVersion, classifier: ModelVersion) -> None:
    """Fail with one line unless `classifier` was fit on the latents of exactly this generator version."""
    fit_on = (classifier.tags.get(GENERATOR_TAG), classifier.tags.get(GENERATOR_VERSION_TAG))
    if fit_on != (generator.name, str(generator.version)):
        raise PairMismatch(
            f"classifier {classifier.name} v{classifier.version} was fit on the latents of {fit_on[0]} v{fit_on[1]}, "
            f"not of {generator.name} v{generator.version}; load that generator version or a classifier fit on this one"
        )
