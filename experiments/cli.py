"""The ``ntk-limits`` command line: run studies, write the report, list data sets.

Examples::

    ntk-limits run kernels --profile smoke --set widths=64,256
    ntk-limits run all --profile embedded --workdir results
    ntk-limits report --workdir results
    ntk-limits datasets --fetch mnist
    ntk-limits diagnose my_models.py:make_net --data mnist5k --n 256 --steps 100

Bad input (unknown study, profile, key or data set, a value of the wrong type, a config
the study rejects, an unwritable workdir, missing data) gets one line on stderr,
``ntk-limits: error: <what>; allowed: <...>``, exit status 2, and nothing is written.
JAX and the studies are imported only inside the commands, so ``--help`` is fast.
"""

import argparse
import os
import sys
from collections.abc import Sequence

from ntk_limits_experiments.config import PROFILES, settable  # stdlib only: --help stays fast

__all__ = ["build_parser", "main"]

_PROG = "ntk-limits"


class UsageError(Exception):
    """Bad input: reported as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line in the ntk-limits format."""

    def error(self, message: str):
        raise UsageError(f"{message}; allowed: see '{self.prog} --help'")


def _compile_cache_dir(arg: str | None) -> str | None:
    """The folder of JAX's persistent compilation cache, or None when disabled."""
    value = arg or os.environ.get("NTK_LIMITS_COMPILE_CACHE") or "~/.cache/ntk-limits/xla"
    if value.strip().lower() in ("none", "off", ""):
        return None
    path = os.path.abspath(os.path.expanduser(value))
    parent = path
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK):
        raise UsageError(
            f"compile cache {value!r} cannot be created ({parent!r} is not a writable "
            "folder); allowed: a writable folder, or 'none'"
        )
    return path


def _enable_compile_cache(path: str | None) -> None:
    """Turns on JAX's persistent compilation cache (every program, however fast to compile).

    On a CPU about half of a study's time is XLA compilation; the cache keys each program
    by its HLO, compile options, JAX version and device, so only identical programs are
    reused and results do not change.
    """
    if path is None:
        return
    import jax

    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def _default_data_dir() -> str:
    return os.environ.get("TFDS_DATA_DIR") or os.path.expanduser("~/tensorflow_datasets")


def build_parser() -> argparse.ArgumentParser:
    """Returns the argument parser of ``ntk-limits`` and its subcommands."""
    parser = _Parser(prog=_PROG, description="Re-measure the limits of the NTK perspective.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = sub.add_parser(
        "run",
        help="run one study or all of them",
        description=(
            "Run a study's runs that have not finished yet, store them under WORKDIR/STUDY, "
            "and write its tables, figures and summary. Finished runs are never repeated."
        ),
    )
    run.add_argument("study", metavar="STUDY", help="a study name, or 'all' for every study")
    run.add_argument(
        "--profile",
        default="embedded",
        metavar="{" + ",".join(PROFILES) + "}",
        help="config size: smoke (seconds), embedded (default), paper",
    )
    run.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value (repeatable); lists as a,b,c",
    )
    run.add_argument("--workdir", default="results", help="results folder (default: results)")
    run.add_argument(
        "--data-dir",
        default=None,
        help="data folder (default: $TFDS_DATA_DIR "
        "or ~/tensorflow_datasets); used by studies whose config has data_dir",
    )
    run.add_argument("--retry-failed", action="store_true", help="execute failed runs again")
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="check everything (config, data, memory, workdir), list the runs, run nothing",
    )
    run.add_argument(
        "--stand-in",
        action="store_true",
        help="run paper data sets that are not in --data-dir on packaged stand-ins at the "
        "paper's sizes (for timing; the report marks them)",
    )
    run.add_argument(
        "--compile-cache",
        metavar="DIR",
        default=None,
        help="JAX's persistent compilation cache: a second run reuses the compiled programs "
        "(default: $NTK_LIMITS_COMPILE_CACHE or ~/.cache/ntk-limits/xla; 'none' disables it)",
    )
    several = run.add_argument_group(
        "several processes or hosts",
        "run one study with N processes (on one machine or several, sharing WORKDIR) "
        "through JAX's distributed runtime: each takes a disjoint share of the runs, and "
        "process 0 writes the summary once all are done",
    )
    several.add_argument(
        "--distributed",
        action="store_true",
        help="jax.distributed.initialize() with the cluster's own settings (SLURM, MPI, ...)",
    )
    several.add_argument("--coordinator", metavar="HOST:PORT", help="process 0's address")
    several.add_argument("--num-processes", metavar="N", help="how many processes")
    several.add_argument("--process-id", metavar="I", help="this process, 0 … N−1")
    run.set_defaults(handler=_cmd_run)

    report = sub.add_parser(
        "report",
        help="write REPORT.md and verdicts.json",
        description="Write WORKDIR/REPORT.md and WORKDIR/verdicts.json "
        "from the stored study summaries (runs nothing).",
    )
    report.add_argument("--workdir", default="results", help="results folder (default: results)")
    report.set_defaults(handler=_cmd_report)

    data = sub.add_parser(
        "datasets",
        help="list (or fetch) the data sets",
        description="List the data sets the studies use and whether each "
        "is present in the data folder; --fetch downloads one.",
    )
    data.add_argument(
        "--data-dir",
        default=None,
        help="data folder (default: $TFDS_DATA_DIR or ~/tensorflow_datasets)",
    )
    data.add_argument("--fetch", metavar="NAME", default=None, help="download this data set")
    data.set_defaults(handler=_cmd_datasets)

    diag = sub.add_parser(
        "diagnose",
        help="does the NTK describe YOUR network? (writes DIAGNOSIS.md)",
        description="Train a user's model briefly and say whether the neural tangent kernel "
        "describes it: Gram spectrum, C′ along the training, kernel change, linearisation "
        "error, with the rule stated. FACTORY returns (apply_fn, params[, kernel_fn]) or "
        "(flax module, input_shape).",
    )
    diag.add_argument(
        "factory", metavar="MODULE:FACTORY", help="a .py file or module, and a function in it"
    )
    diag.add_argument(
        "--data",
        required=True,
        help="a packaged data set (see 'ntk-limits datasets') or an .npz file",
    )
    diag.add_argument("--n", type=_positive_int, default=256, help="training inputs (256)")
    diag.add_argument("--n-test", type=_positive_int, default=64, help="held-out inputs (64)")
    diag.add_argument("--steps", type=_positive_int, default=100, help="training steps (100)")
    diag.add_argument(
        "--optimizer",
        choices=("gd", "ngd", "adam", "momentum"),
        default="gd",
        help="gd (default), ngd, adam or momentum (SGD with momentum 0.9)",
    )
    diag.add_argument(
        "--lr",
        type=_positive_float,
        default=None,
        help="step size (gd default: n·k/λ_max(K₀); ngd default: 1)",
    )
    diag.add_argument(
        "--damping",
        type=_positive_float,
        default=1e-4,
        help="NGD's damping relative to the mean Gram diagonal (1e-4)",
    )
    diag.add_argument(
        "--checkpoints", type=_positive_int, default=5, help="checkpoints along the training (5)"
    )
    diag.add_argument(
        "--precision",
        choices=("float64", "float32"),
        default="float64",
        help="of the Gram at initialisation and its spectrum (float64)",
    )
    diag.add_argument(
        "--batchnorm",
        choices=("batch", "running"),
        default="batch",
        help="BatchNorm of a Linen module: batch statistics (training mode, "
        "default) or running averages",
    )
    diag.add_argument(
        "--flatten",
        action="store_true",
        help="flatten each input (for an apply_fn that takes vectors)",
    )
    diag.add_argument("--seed", type=int, default=0, help="initialisation and subset seed (0)")
    diag.add_argument(
        "--data-dir", default=None, help="folder of the paper data sets (default: $TFDS_DATA_DIR)"
    )
    diag.add_argument("--workdir", default="diagnosis", help="report folder (diagnosis)")
    diag.set_defaults(handler=_cmd_diagnose)
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive finite number")
    return value


def _resolve_studies(name: str) -> list:
    from ntk_limits_experiments import registry

    if name != "all":
        known = registry.names()
        if name not in known:
            raise UsageError(f"unknown study {name!r}; allowed: {', '.join([*known, 'all'])}")
        study = registry.load(name)
        if study is None:
            built = [n for n in known if registry.load(n) is not None]
            raise UsageError(
                f"study {name!r} is not built yet (no module "
                f"{registry.module_name(name)}); allowed: {', '.join(built) or 'none yet'}"
            )
        return [study]
    return [s for s in (registry.load(n) for n in registry.names()) if s is not None]


def _print_skipped() -> None:
    from ntk_limits_experiments import registry

    for n in registry.STUDIES:
        if registry.load(n) is None:
            print(
                f"[{n}] not built yet ({registry.module_name(n)} missing): skipped", file=sys.stderr
            )


def _prepare(studies: list, args: argparse.Namespace) -> list:
    from ntk_limits_experiments import runner

    if args.profile not in PROFILES:
        raise UsageError(f"unknown profile {args.profile!r}; allowed: {', '.join(PROFILES)}")
    data_dir = args.data_dir or _default_data_dir()
    several = len(studies) > 1 or args.study == "all"
    configs = [
        runner.prepare_config(
            s, args.profile, args.overrides, data_dir=data_dir, unknown_ok=several
        )
        for s in studies
    ]
    if several:  # a key must belong to at least one study
        known = {k for s in studies for k in settable(s.get_config(args.profile))}
        for item in args.overrides:
            key = item.partition("=")[0].strip()
            if key not in known:
                raise UsageError(
                    f"unknown key {key!r} (in no study); allowed: {', '.join(sorted(known))}"
                )
    if args.stand_in:
        configs = [_stand_in(s, c) for s, c in zip(studies, configs, strict=True)]
    for study, config in zip(studies, configs, strict=True):
        try:
            runner.check_data(config)
        except Exception as e:
            raise type(e)(f"{study.name}: {e}") from e
    for study, config in zip(studies, configs, strict=True):
        runner.check_memory(study, list(study.expand(config)))
    runner.check_workdir(args.workdir)
    return configs


def _stand_in(study, config):
    from ntk_limits_experiments import runner

    try:
        config, notes = runner.use_stand_ins(config)
    except ValueError as e:
        raise ValueError(f"{study.name}: --stand-in: {e}") from e
    for note in notes:
        print(f"[{study.name}] stand-in data (timing only): {note}", file=sys.stderr)
    return config


def _distributed_settings(args: argparse.Namespace) -> dict | None:
    """``jax.distributed.initialize`` keywords from the flags (None: one process)."""
    given = [args.coordinator, args.num_processes, args.process_id]
    if not args.distributed and all(v is None for v in given):
        return None
    if any(v is None for v in given):
        if args.distributed and all(v is None for v in given):
            return {}
        raise ValueError(
            "--coordinator, --num-processes and --process-id go together; allowed: all "
            "three, or --distributed alone (the cluster's own settings)"
        )
    host, _, port = args.coordinator.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--coordinator {args.coordinator!r}; allowed: HOST:PORT")
    if not args.num_processes.isdigit() or int(args.num_processes) < 1:
        raise ValueError(f"--num-processes {args.num_processes!r}; allowed: an integer >= 1")
    count = int(args.num_processes)
    if not args.process_id.isdigit() or int(args.process_id) >= count:
        raise ValueError(f"--process-id {args.process_id!r}; allowed: 0 … {count - 1}")
    return {
        "coordinator_address": args.coordinator,
        "num_processes": count,
        "process_id": int(args.process_id),
    }


def _join(settings: dict):
    """Joins JAX's distributed runtime; the runner's :class:`Share` of this process."""
    import jax
    from jax.experimental import multihost_utils

    from ntk_limits_experiments import runner

    jax.distributed.initialize(**settings)
    barrier = multihost_utils.sync_global_devices
    return runner.Share(jax.process_index(), jax.process_count(), barrier)


def _dry_run(studies: list, configs: list, workdir: str) -> int:
    """Lists each study's runs and how many are stored already; writes nothing."""
    from ntk_limits_experiments import store

    for study, config in zip(studies, configs, strict=True):
        specs = study.expand(config)
        keys = [store.run_key(study.name, store.to_jsonable(s)) for s in specs]
        done = sum(store.run_path(workdir, study.name, k).exists() for k in keys)
        print(f"[{study.name}] {len(specs)} runs, {done} stored, {len(specs) - done} to run "
              f"(dry run: nothing run or written)", file=sys.stderr)  # fmt: skip
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from ntk_limits_experiments import runner

    try:
        studies = _resolve_studies(args.study)
        cache = _compile_cache_dir(args.compile_cache)
        settings = _distributed_settings(args)
        configs = _prepare(studies, args)
    except ValueError as e:
        raise UsageError(str(e)) from e
    if args.dry_run:
        return _dry_run(studies, configs, args.workdir)
    _enable_compile_cache(cache)
    share = None if settings is None else _join(settings)
    if args.study == "all":
        _print_skipped()
    status = 0
    for study, config in zip(studies, configs, strict=True):
        try:
            records = runner.run_study(
                study,
                config,
                args.workdir,
                profile=args.profile,
                retry_failed=args.retry_failed,
                share=share,
            )
        except Exception as e:
            if runner.is_data_unavailable(e) or len(studies) == 1 or share is not None:
                raise  # with several processes, going on would leave the others waiting
            import traceback

            traceback.print_exc()
            print(f"[{study.name}] crashed; continuing with the next study", file=sys.stderr)
            status = 1
            continue
        counts = {s: sum(r["status"] == s for r in records) for s in ("ok", "diverged", "failed")}
        counted = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        where = os.path.join(args.workdir, study.name)
        print(f"[{study.name}] {len(records)} runs: {counted}; results in {where}", file=sys.stderr)
    if share is not None and share.index:
        return status
    print(
        f"next: ntk-limits report --workdir {args.workdir}  (writes "
        f"{os.path.join(args.workdir, 'REPORT.md')})",
        file=sys.stderr,
    )
    return status


def _cmd_report(args: argparse.Namespace) -> int:
    if not os.path.isdir(args.workdir):
        raise UsageError(
            f"workdir {args.workdir!r} does not exist; allowed: a folder "
            "written by 'ntk-limits run'"
        )
    from ntk_limits_experiments.report import write_report
    from ntk_limits_experiments.store import DamagedFile

    try:
        report, verdicts = write_report(args.workdir)
    except DamagedFile as e:
        raise UsageError(str(e)) from e
    print(f"wrote {report} and {verdicts}")
    return 0


def _cmd_datasets(args: argparse.Namespace) -> int:
    try:
        from ntk_limits import data
    except ImportError as e:
        raise UsageError(f"ntk_limits.data cannot be imported ({e}); allowed: none yet") from e
    if not hasattr(data, "catalogue"):
        raise UsageError("ntk_limits.data has no catalogue yet; allowed: none yet")
    data_dir = args.data_dir or _default_data_dir()
    if args.fetch is not None:
        names = [getattr(i, "name", None) for i in data.catalogue(data_dir)]
        if args.fetch not in names:
            raise UsageError(
                f"unknown data set {args.fetch!r}; allowed: {', '.join(str(n) for n in names)}"
            )
        try:
            data.fetch(args.fetch, data_dir)
        except OSError as e:  # offline, disk full, ...
            raise UsageError(
                f"could not fetch {args.fetch!r} into {data_dir!r} "
                f"({type(e).__name__}: {e}); allowed: a machine that is online "
                "and a writable data folder"
            ) from e
    print(data.format_catalogue(data.catalogue(data_dir)))
    return 0


def _cmd_diagnose(args: argparse.Namespace) -> int:
    from ntk_limits_experiments import diagnose, runner

    try:
        runner.check_workdir(args.workdir)
    except ValueError as e:
        raise UsageError(str(e)) from e
    args.data_dir = args.data_dir or _default_data_dir()
    try:
        report, result = diagnose.run(args)
    except diagnose.DiagnoseError as e:
        text = str(e)
        raise UsageError(
            text if "allowed:" in text else f"{text}; allowed: see 'ntk-limits diagnose --help'"
        ) from e
    print(f"{result.verdict}: wrote {report}")
    return 0


def _fail(message: str) -> int:
    line = " ".join(str(message).split())
    print(f"{_PROG}: error: {line}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Runs ``ntk-limits`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    try:
        args = build_parser().parse_args(argv)
        return args.handler(args)
    except UsageError as e:
        return _fail(str(e))
    except BrokenPipeError:  # stdout piped into e.g. head, which exited
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        print(f"{_PROG}: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except Exception as e:
        from ntk_limits_experiments.runner import is_data_unavailable

        if is_data_unavailable(e):
            return _fail(
                f"{e}"
                if "allowed:" in str(e)
                else f"{e}; allowed: data present in the data folder (see 'ntk-limits datasets')"
            )
        raise
