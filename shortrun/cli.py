"""The `shortrun` command: run or serve the pipeline, run one stage, and use a registered model."""
from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from shortrun.errors import ERROR_PREFIX, ShortrunError
from shortrun.ops.stop_signals import StopSignals
from shortrun.ops.tracking_probe import require_reachable_tracking_server
from shortrun.paths import STAGES

WORKSPACE_COMMANDS = ("run", "stage")  # the ones whose unforeseen errors are one line, tracebacks in a log file
# Full logs and tracebacks of workspace commands go here; the console gets one line per problem.
LOG_DIR = Path(".shortrun") / "logs"
# Set by `--verbose` and inherited by the stage commands DVC starts: tracebacks on the console too.
VERBOSE_ENV = "SHORTRUN_VERBOSE"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run the whole pipeline once (Prefect flow over the DVC stages)")
    p.add_argument("--preset", help="preset to select in params.yaml before running (tiny, yelp, ptb, ...)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a param, e.g. --set train.epochs=3 (repeatable); written to params.yaml")
    p.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                   help="if another pipeline run holds this workspace, wait this long for it (default: skip at once)")
    _add_verbose(p)
    p.set_defaults(handler=_run)


def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve the pipeline flow on a schedule (needs `prefect server start`)")
    when = p.add_mutually_exclusive_group()
    when.add_argument("--cron", help="cron expression (default: '0 3 * * *', daily at 03:00)")
    when.add_argument("--interval", type=float, metavar="SECONDS",
                      help="run every SECONDS instead, the first one SECONDS after starting")
    p.add_argument("--name", default="shortrun-scheduled", help="deployment name")
    p.set_defaults(handler=_serve)


def _add_sweep(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="search params as trials (one pipeline run each, own workspace) under one MLflow run")
    p.add_argument("file", nargs="?", help="sweep file, e.g. sweeps/chain.yaml (flags below override its keys)")
    p.add_argument("--name", help="sweep name: MLflow parent run sweep-NAME, trials in .shortrun/sweeps/NAME/")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                   help="try each value, e.g. --grid langevin.steps=5,10 (repeatable)")
    p.add_argument("--random", action="append", default=[], metavar="KEY=DIST",
                   help="draw from uniform(a,b), loguniform(a,b), randint(a,b) or choice(...), e.g. "
                        "--random 'langevin.step_size=loguniform(0.1,1)' (repeatable)")
    p.add_argument("--method", choices=("grid", "random"), help="default: random when any --random, else grid")
    p.add_argument("--budget", type=int, help="number of trials (random: required; grid: the first N)")
    p.add_argument("--seed", type=int, help="seed of the random draws (default 0)")
    p.add_argument("--metric", help="validation metric to choose on, e.g. train.sri.best_valid_nll")
    p.add_argument("--direction", choices=("minimize", "maximize"), help="default: minimize")
    p.add_argument("--preset", help="preset every trial starts from (default: params.yaml as it is)")
    p.add_argument("--set", dest="fixed", action="append", default=[], metavar="KEY=VALUE",
                   help="override a param in every trial, e.g. --set train.epochs=1 (repeatable)")
    p.add_argument("--parallel", type=int, default=1, help="trials run at once on this machine (default 1)")
    p.add_argument("--trials-dir", type=Path, help="where trial workspaces go (default .shortrun/sweeps/NAME)")
    p.add_argument("--command", default="shortrun run", help="what a trial runs in its workspace (default: shortrun run)")
    p.add_argument("--pool", help="run trials as flow runs on this Prefect work pool (needs PREFECT_API_URL; docs/scaling.md)")
    p.add_argument("--repo", help="with --pool: the git URL workers clone (default: this checkout's path)")
    p.add_argument("--trial-timeout", type=float, metavar="SECONDS",
                   help="with --pool: a trial running this long without a result is marked Crashed and failed "
                        "(a lost worker); default: wait")
    p.add_argument("--dvc-remote", metavar="URL",
                   help="DVC remote the trials share: the data prepared once, each trial's outputs pushed "
                        "(a folder, s3://..., ...; default: $SHORTRUN_DVC_REMOTE, else none)")
    p.set_defaults(handler=_sweep)


def _sweep(args: argparse.Namespace) -> int:
    from flows.sweep import Sweep
    from shortrun.sweep import build_sweep, load_sweep_file, parse_grid, parse_random

    flags = {"name": args.name, "grid": parse_grid(args.grid), "random": parse_random(args.random),
             "method": args.method, "budget": args.budget, "seed": args.seed, "metric": args.metric,
             "direction": args.direction, "preset": args.preset, "fixed": args.fixed}
    if args.file:
        cfg = load_sweep_file(args.file, **flags)
    elif not args.name:
        raise ShortrunError("sweep: --name is required without a sweep file (it names the MLflow parent run)")
    else:
        cfg = build_sweep({k: v for k, v in flags.items() if v not in (None, [], {})}, "shortrun sweep")
    sweep = Sweep(cfg, trials_dir=args.trials_dir, command=args.command, pool=args.pool, repo=args.repo,
                  trial_timeout_s=args.trial_timeout, dvc_remote=args.dvc_remote)
    results, chosen, report = sweep.run(args.parallel)
    print(report.read_text(encoding="utf-8"))
    print(f"shortrun: sweep report {report} and plot {report.with_suffix('.png')}")
    if chosen is None:
        raise ShortrunError(f"sweep {cfg.name}: no trial finished with {cfg.metric}")
    failed = [r.trial.key for r in results if r.status != "finished"]
    if failed:
        print(f"{ERROR_PREFIX}sweep {cfg.name}: {len(failed)} of {len(results)} trials failed ({', '.join(failed)}); "
              "run the sweep again to retry them", file=sys.stderr)
        return 3
    return 0


def _add_params(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("params", help="write params.yaml in full: a preset's values, overrides and the data root")
    p.add_argument("--preset", help="start from this preset's values (tiny, yelp, ptb, ...); default: the file's own")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a param, e.g. --set train.epochs=3 (repeatable)")
    p.add_argument("--data-root", help="folder holding the corpus folders (default: $SHORTRUN_DATA, else the file's own)")
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    p.set_defaults(handler=_params)


def _params(args: argparse.Namespace) -> int:
    from shortrun.params import write_params

    cfg = write_params(args.preset, args.overrides, Path(args.params), args.data_root)
    print(f"shortrun: {args.params}: preset {cfg.preset}, corpora under {cfg.data.root}")
    return 0


def _add_stage(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("stage", help="run one pipeline stage (what dvc.yaml calls; prefer `dvc repro <stage>`)")
    p.add_argument("name", choices=STAGES, help="stage to run")
    p.add_argument("--model", help="model kind for train/export: sri, vae or lm")
    p.add_argument("--resume", action="store_true", help="train: continue from the last checkpoint")
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    _add_verbose(p)
    p.set_defaults(handler=_stage)


def _add_register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("register", help="register the workspace's SRI generator and classifier (the flow's last step; "
                                        "after `dvc repro`, with `dvc status` clean)")
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    p.set_defaults(handler=_register)


def _register(args: argparse.Namespace) -> int:
    from flows.stages import dvc_status
    from shortrun.params import load_config
    from tasks import register

    cfg = load_config(Path(args.params))
    stale = sorted(dvc_status())
    if stale:  # the generator, its latents and the classifier must come from one consistent run
        raise ShortrunError(f"register: dvc status is not clean ({', '.join(stale)}); run `dvc repro` first")
    for line in register.run(cfg).lines():
        print(f"shortrun: {line}")
    return 0


def _add_verbose(p: argparse.ArgumentParser) -> None:
    p.add_argument("--verbose", action="store_true",
                   help=f"show tracebacks on the console (default: one line per error, tracebacks in {LOG_DIR}/)")


def _add_model_commands(sub: argparse._SubParsersAction) -> None:
    enc = sub.add_parser("encode", help="encode sentences to latent vectors with a registered generator")
    enc.add_argument("--model", required=True,
                     help="model URI, e.g. models:/shortrun-generator-short_yelp@champion (one per data.corpus)")
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

    return serve(cron=args.cron, name=args.name, interval_s=args.interval)


def _model_kind(args: argparse.Namespace) -> str:
    if not args.model:
        raise ShortrunError(f"stage {args.name}: --model is required (sri, vae or lm)")
    return args.model


# Each stage's entry point; a stage module is imported only when its stage runs (they load torch, sklearn ...).
def _prepare(cfg: Any, args: argparse.Namespace) -> None:
    from tasks import prepare

    prepare.run(cfg)


def _train(cfg: Any, args: argparse.Namespace) -> None:
    from tasks import train

    train.run(cfg, kind=_model_kind(args), resume=args.resume)


def _export(cfg: Any, args: argparse.Namespace) -> None:
    from tasks import export

    export.run(cfg, kind=_model_kind(args))


def _classify(cfg: Any, args: argparse.Namespace) -> None:
    from tasks import classify

    classify.run(cfg)


def _evaluate(cfg: Any, args: argparse.Namespace) -> None:
    from tasks import evaluate

    evaluate.run(cfg)


def _headline(cfg: Any, args: argparse.Namespace) -> None:
    from tasks import headline

    headline.run(cfg)


STAGE_RUNNERS: dict[str, Callable[[Any, argparse.Namespace], None]] = {
    "prepare": _prepare, "train": _train, "export": _export, "classify": _classify, "evaluate": _evaluate,
    "headline": _headline,
}
# the stages that log to MLflow (headline reads metrics files only: no run, no server to probe)
TRACKED_STAGES = tuple(name for name in STAGES if name != "headline")


def _stage(args: argparse.Namespace) -> int:
    from shortrun.params import load_config

    if args.name in TRACKED_STAGES:
        require_reachable_tracking_server()
    STAGE_RUNNERS[args.name](load_config(Path(args.params)), args)
    return 0


def _check_model_command(command: str, args: argparse.Namespace) -> None:
    """Arguments a model command cannot use fail here, in one line, before any model is loaded."""
    from shortrun.data.tokenize import tokenize

    if command == "generate" and args.num < 1:
        raise ShortrunError(f"generate: -n/--num must be at least 1, got {args.num}")
    if command == "interpolate" and args.steps < 2:
        raise ShortrunError(f"interpolate: --steps must be at least 2, got {args.steps}")
    sentences = args.sentences if command == "encode" else [args.start, args.end] if command == "interpolate" else []
    for number, sentence in enumerate(sentences, 1):
        if not tokenize(sentence):
            raise ShortrunError(f"{command}: sentence {number} is empty; expected at least one word")


def _serving(command: str):
    def handler(args: argparse.Namespace) -> int:
        _check_model_command(command, args)
        from shortrun.ops import serving

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
    _add_params(sub)
    _add_sweep(sub)
    _add_stage(sub)
    _add_register(sub)
    _add_model_commands(sub)
    return parser


class _OneLineFormatter(logging.Formatter):
    """Console log lines without tracebacks: the error's own line says what happened, the log file keeps the rest."""

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        try:
            return super().format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved


def _log_file(name: str) -> Path:
    """A new log file under LOG_DIR, one per command started (time and process id in its name)."""
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    return LOG_DIR / f"{name}-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{os.getpid()}.log"


def _setup_logging(args: argparse.Namespace, verbose: bool) -> Path | None:
    """Console logging (tracebacks only when verbose); `shortrun run` also logs everything to a file. Returns it."""
    console = logging.StreamHandler()
    console.setFormatter(logging.Formatter(LOG_FORMAT) if verbose else _OneLineFormatter(LOG_FORMAT))
    handlers: list[logging.Handler] = [console]
    log_file = _log_file("run") if args.command == "run" else None
    if log_file is not None:
        to_file = logging.FileHandler(log_file, encoding="utf-8")
        to_file.setFormatter(logging.Formatter(LOG_FORMAT))
        handlers.append(to_file)
    logging.basicConfig(level=logging.WARNING, handlers=handlers)
    for ours in ("shortrun", "tasks"):  # our progress lines, without the libraries' INFO chatter
        logging.getLogger(ours).setLevel(logging.INFO)
    return log_file


def _unexpected(err: Exception, args: argparse.Namespace, log_file: Path | None) -> str:
    """One line for an error no check foresaw (a bug, a library's failure); its traceback goes to a log file."""
    log_file = log_file or _log_file(f"{args.command}-{args.name}")
    with log_file.open("a", encoding="utf-8") as out:
        out.write("".join(traceback.format_exception(err)))
    first = (str(err).strip().splitlines() or [""])[0][:300]
    return f"{type(err).__name__}: {first} (traceback in {log_file})"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "stage":
        StopSignals().install()  # SIGTERM and Ctrl-C stop a stage as KeyboardInterrupt, never mid tracking write
    verbose = getattr(args, "verbose", False) or os.environ.get(VERBOSE_ENV) == "1"
    if verbose:
        os.environ[VERBOSE_ENV] = "1"  # the stages DVC starts for `shortrun run --verbose` show theirs too
    log_file = _setup_logging(args, verbose)
    try:
        return args.handler(args)
    except ShortrunError as err:
        message = str(err)
        code = 2
    except KeyboardInterrupt:
        print("shortrun: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if verbose or args.command not in WORKSPACE_COMMANDS:  # model commands show a bug's traceback as Python does
            raise
        message, code = _unexpected(err, args, log_file), 1
    if log_file is not None:
        print(f"shortrun: the full log is in {log_file}", file=sys.stderr)
    print(f"{ERROR_PREFIX}{message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
