"""The headline stage: metrics/headline.json from the evaluate and classify metrics (see shortrun.headline).

It is the pipeline's only DVC metrics file, so `dvc exp show` compares experiments on a few columns;
the full metrics files stay as plain outputs of their stages (and in MLflow).
"""
from __future__ import annotations

import json

from shortrun.config import PipelineConfig
from shortrun.headline import headline
from shortrun.io import write_json
from shortrun.paths import METRICS

EVALUATE = METRICS / "evaluate.json"
CLASSIFY = METRICS / "classify.json"
HEADLINE = METRICS / "headline.json"


def run(_cfg: PipelineConfig) -> None:
    """Write metrics/headline.json; it reads no params, only the two metrics files."""
    write_json(HEADLINE, headline(json.loads(EVALUATE.read_text(encoding="utf-8")),
                                  json.loads(CLASSIFY.read_text(encoding="utf-8"))))
