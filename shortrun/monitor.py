"""Posterior-collapse watch: how much the inferred latents vary across sentences.

A dimension is active when the variance of the posterior mean across sentences exceeds 0.01
(Burda et al.'s active units, as in the paper). A model with no active unit ignores z.
"""
from __future__ import annotations

import logging

from torch import Tensor

AU_THRESHOLD = 0.01
log = logging.getLogger("shortrun.monitor")


def active_units(posterior_means: Tensor, threshold: float = AU_THRESHOLD) -> int:
    """Number of dimensions whose posterior mean varies across sentences [N, d] by more than `threshold`."""
    return int((posterior_means.var(dim=0) > threshold).sum())


def latent_metrics(posterior_means: Tensor) -> dict[str, float]:
    """Per-dimension variance across sentences (z_var_dNN), its min/mean/max, active units and `collapsed`.

    Logs a loud warning when no unit is active.
    """
    var = posterior_means.double().var(dim=0)
    au = active_units(posterior_means)
    metrics = {f"z_var_d{i:02d}": float(v) for i, v in enumerate(var)}
    metrics.update(
        z_var_min=float(var.min()), z_var_mean=float(var.mean()), z_var_max=float(var.max()),
        active_units=float(au), collapsed=float(au == 0),
    )
    if au == 0:
        log.warning(
            "WARNING: POSTERIOR COLLAPSE - no active latent unit (variance of the posterior mean across sentences "
            "<= %s in every dimension, max %.3g); the decoder ignores z", AU_THRESHOLD, metrics["z_var_max"],
        )
    return metrics
