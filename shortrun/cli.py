"""The `shortrun` command: run or serve the pipeline, run one stage, and use a registered model."""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
from pathlib import Path

from shortrun.errors import ShortrunError

STAGES = ("prepare", "train", "export", "classify", "evaluate")


def _add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run the whole pipeline once (Prefect flow over the DVC stages)")
    p.add_argument("--preset", help="preset to select in params.yaml before running (tiny, yelp, ptb, ...)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a param, e.g. --set train.epochs=3 (repeatable); written to params.yaml")
    p.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                   help="if another pipeline run holds this workspace, wait this long for it (default: skip at once)")
    p.set_defaults(handler=_run)


def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve the pipeline flow on a cron schedule (needs `prefect server start`)")
    p.add_argument("--cron", default="0 3 * * *", help="cron expression, default: daily at 03:00")
    p.add_argument("--name", default="shortrun-scheduled", help="deployment name")
    p.set_defaults(handler=_serve)


def _add_stage(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("stage", help="run one pipeline stage (what dvc.yaml calls; prefer `dvc repro <stage>`)")
    p.add_argument("name", choices=STAGES, help="stage to run")
    p.add_argument("--model", help="model kind for train/export: sri, vae or lm")
    p.add_argument("--resume", action="store_true", help="train: continue from the last checkpoint")
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    p.set_defaults(handler=_stage)


def _add_model_commands(sub: argparse._SubParsersAction) -> None:
    enc = sub.add_parser("encode", help="encode sentences to latent vectors with a registered generator")
    enc.add_argument("--model", required=True, help="model URI, e.g. models:/shortrun-generator@champion")
    enc.add_argument("sentences", nargs="+", help="sentences (whitespace-tokenized)")
    enc.set_defaults(handler=_serving("encode"))

    gen = sub.add_parser("generate", help="sample sentences from the prior of a registered generator")
    gen.add_argument("--model", required=True, help="model URI")
    gen.add_argument("-n", "--num", type=int, default=5, help="number of sentences")
    gen.add_argument("--seed", type=int, default=0)
    gen.set_defaults(handler=_serving("generate"))

    itp = sub.add_parser("interpolate", help="decode points on the line between two sentences' latents")
    itp.add_argument("--model", required=True, help="model URI")
    itp.add_argument("start", help="first sentence")
    itp.add_argument("end", help="second sentence")
    itp.add_argument("--steps", type=int, default=5, help="points on the line, ends included")
    itp.set_defaults(handler=_serving("interpolate"))


def _run(args: argparse.Namespace) -> int:
    from flows.pipeline import run_from_cli

    return run_from_cli(preset=args.preset, overrides=args.overrides, lock_wait_s=args.wait)


def _serve(args: argparse.Namespace) -> int:
    from flows.schedule import serve

    return serve(cron=args.cron, name=args.name)


def _stage(args: argparse.Namespace) -> int:
    from shortrun.params import load_config

    cfg = load_config(Path(args.params))
    module = importlib.import_module(f"tasks.{args.name}")
    kwargs = {}
    if args.name in ("train", "export"):
        if not args.model:
            raise ShortrunError(f"stage {args.name}: --model is required (sri, vae or lm)")
        kwargs["kind"] = args.model
    if args.name == "train":
        kwargs["resume"] = args.resume
    module.run(cfg, **kwargs)
    return 0


def _serving(command: str):
    def handler(args: argparse.Namespace) -> int:
        from shortrun import serving

        return getattr(serving, f"{command}_command")(args)

    return handler


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shortrun",
        description="Latent-variable text models with short-run Langevin inference: pipeline and model tools.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _add_run(sub)
    _add_serve(sub)
    _add_stage(sub)
    _add_model_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for ours in ("shortrun", "tasks"):  # our progress lines, without the libraries' INFO chatter
        logging.getLogger(ours).setLevel(logging.INFO)
    try:
        return args.handler(args)
    except ShortrunError as err:
        print(f"shortrun: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("shortrun: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
