"""Command line of fastnn.tune: ``python -m fastnn.tune {digits,show,measure}``.

    digits [--trials N] [--method random|coarse-to-fine|halving]
           [--executor serial|processes|dask] [--plot PATH] [--journal PATH]
           [--seed S] [--epochs E] ...
                                              tune the digits MLP of ``train digits``
                                              (``digits.py``), print the table and
                                              the best configuration, retrain it on
                                              the whole training part, print its
                                              test accuracy
    show JOURNAL [--limit N] [--plot PATH]   the table of a saved search or journal
                                              (best first), and its plot
    measure [--overhead] [--throughput] [--digits] [--anchors] [--trials N]
            [--seconds S]                     the figures of ``measure.py`` (none
                                              chosen: all four); run under the
                                              exclusive lock

``main(argv) -> exit code`` (0, or 2 on a usage error), so that
``python -m fastnn tune ...`` can hand its arguments here.
"""

import argparse
import sys


def _parser():
    parser = argparse.ArgumentParser(prog="python -m fastnn tune",
                                     description="hyperparameter search with fastnn.tune")
    commands = parser.add_subparsers(dest="command", required=True)
    _digits_parser(commands)
    show = commands.add_parser("show", help="print the table of a saved search or journal")
    show.add_argument("journal", help="a file written by journal= or SearchResult.save")
    show.add_argument("--limit", type=int, default=None, help="at most this many rows")
    show.add_argument("--plot", metavar="PATH", help="also plot score against each parameter (PNG)")
    measure = commands.add_parser(
        "measure", help="per-trial overhead, parallel throughput, and the digits search "
                        "against Optuna and scikit-learn")
    measure.add_argument("--overhead", action="store_true", help="only the per-trial overhead")
    measure.add_argument("--throughput", action="store_true",
                         help="parallel throughput on a synthetic MLP of --seconds a trial")
    measure.add_argument("--digits", action="store_true",
                         help="parallel throughput of the 'tune digits' random search")
    measure.add_argument("--anchors", action="store_true",
                         help="the 'tune digits' random search against Optuna and "
                              "scikit-learn (--anchor-trials trials)")
    measure.add_argument("--trials", type=int, default=16,
                         help="trials of the throughput searches (default 16)")
    measure.add_argument("--anchor-trials", type=int, default=32,
                         help="trials of the anchor searches (default 32)")
    measure.add_argument("--seconds", type=float, default=1.0,
                         help="about how long one throughput trial takes serially")
    return parser


def _positive(kind):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
        return value
    return parse


METHODS = ("random", "coarse-to-fine", "halving")
EXECUTORS = ("serial", "processes", "dask")


def _digits_parser(commands):
    digits = commands.add_parser(
        "digits", help="tune the digits MLP of 'train digits', then retrain the best",
        description="Search learning rate, Adam's beta1, hidden width, batch size and "
                    "BatchNorm of the digits MLP; score = validation accuracy; the best "
                    "configuration is retrained on the whole training part and tested.")
    digits.add_argument("--trials", type=_positive(int), default=16,
                        help="trials (random), trials over all rounds (coarse-to-fine), "
                             "configurations (halving); default 16")
    digits.add_argument("--method", choices=METHODS, default="random",
                        help="default random")
    digits.add_argument("--executor", choices=EXECUTORS, default="serial",
                        help="serial (this process), processes (one single-threaded worker "
                             "per core) or dask (a LocalCluster on this machine); "
                             "default serial")
    digits.add_argument("--plot", metavar="PATH", help="write score against each parameter (PNG)")
    digits.add_argument("--journal", metavar="PATH",
                        help="append each finished trial here; run again to resume")
    digits.add_argument("--seed", type=int, default=0, help="seed of the search (default 0)")
    digits.add_argument("--epochs", type=_positive(int), default=None,
                        help="epochs of a trial (halving: of the last rung); default "
                             "20")
    digits.add_argument("--rounds", type=_positive(int), default=3,
                        help="coarse-to-fine rounds (default 3)")
    digits.add_argument("--eta", type=int, default=3, help="halving factor (default 3)")
    digits.add_argument("--min-epochs", type=_positive(int), default=None,
                        help="halving: epochs of the first rung (default: epochs / eta^2)")
    digits.add_argument("--timeout", type=_positive(float), default=None,
                        help="seconds a trial may take before it counts as failed")
    digits.add_argument("--limit", type=_positive(int), default=None,
                        help="at most this many rows in the table")
    digits.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bar (default: when stderr is a terminal)")
    return digits


def _fail(message):
    print(f"python -m fastnn tune digits: {message}", file=sys.stderr)
    return 2


def _digits_search(args, executor):
    from . import digits, search
    epochs = digits.EPOCHS if args.epochs is None else args.epochs
    space = dict(digits.SPACE, epochs=epochs)
    common = dict(executor=executor, seed=args.seed, timeout=args.timeout,
                  journal=args.journal, progress=args.progress)
    if args.method == "random":
        return search.random_search(digits.train_digits, space, args.trials, **common)
    if args.method == "coarse-to-fine":
        per_round = -(-args.trials // args.rounds)
        return search.coarse_to_fine(digits.train_digits, space, rounds=args.rounds,
                                     trials_per_round=per_round, **common)
    space.pop("epochs")              # the budget is the epochs
    minimum = args.min_epochs or max(1, round(epochs / args.eta ** 2))
    return search.successive_halving(digits.train_digits, space, args.trials,
                                     min_budget=min(minimum, epochs), max_budget=epochs,
                                     eta=args.eta, **common)


def _describe_method(args, result):
    settings = result.settings
    if args.method == "random":
        return f"random search, {settings['n_trials']} trials"
    if args.method == "coarse-to-fine":
        return (f"coarse to fine, {settings['rounds']} rounds of "
                f"{settings['trials_per_round']} trials, keeping the best "
                f"{settings['keep']:.0%} of each")
    rungs = sorted({(t.round, t.budget) for t in result.trials})
    counts = [sum(1 for t in result.trials if t.round == r) for r, _ in rungs]
    return (f"successive halving, eta {settings['eta']}, rungs " + ", ".join(
        f"{n} x {b} epochs" for n, (_, b) in zip(counts, rungs)))


def digits_main(args):
    """``python -m fastnn tune digits``: see ``_digits_parser``; returns an exit code."""
    import contextlib
    import time

    if args.method == "coarse-to-fine" and -(-args.trials // args.rounds) < 2 and args.rounds > 1:
        return _fail(f"--trials: coarse to fine needs at least 2 trials per round "
                     f"({args.rounds} rounds), got {args.trials}")
    if args.eta < 2:
        return _fail(f"--eta: expected an integer of at least 2, got {args.eta}")
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            from .plot import MISSING
            return _fail(f"--plot: {MISSING}")
    try:
        from . import digits
        parts = digits.data()
    except ImportError as exc:
        return _fail(f"the digits data ship with scikit-learn, which is missing ({exc}); "
                     f"pip install scikit-learn (or fastnn[examples])")
    if args.progress is None:
        args.progress = sys.stderr.isatty()
    with contextlib.ExitStack() as stack:
        if args.executor == "dask":
            from .executors import dask_local_executor
            try:
                executor = stack.enter_context(dask_local_executor())
            except ImportError:
                return _fail("--executor dask: a Dask cluster needs the distributed package; "
                             "pip install distributed (or fastnn[dask])")
        else:
            executor = args.executor
        started = time.perf_counter()
        try:
            result = _digits_search(args, executor)
        except ValueError as exc:
            if not str(exc).startswith("journal:"):
                raise
            return _fail(f"--journal: {exc}")
        wall = time.perf_counter() - started
    (n_fit, n_val, n_test) = (len(parts[k][0]) for k in ("fit", "validation", "test"))
    print(f"tune digits: {_describe_method(args, result)}; executor {args.executor}, "
          f"seed {args.seed}")
    print(f"score: validation accuracy (fit on {n_fit} images, validated on {n_val}; the "
          f"{n_test} test images are kept for the retrained best)")
    print(f"{len(result.trials)} trials in {wall:.2f} s ({len(result.failed())} failed)"
          + ("; interrupted, the finished trials follow" if result.interrupted else ""))
    print(result.table(limit=args.limit))
    if args.plot:
        result.plot(args.plot)
        print(f"plot written to {args.plot}")
    best = result.best
    if best is None:
        print("no trial finished: nothing to retrain", file=sys.stderr)
        return 1
    params = dict(best.params)
    epochs = best.budget if best.budget is not None else params.get("epochs")
    params.pop("epochs", None)
    shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                      for k, v in params.items())
    print(f"best: trial {best.number}, validation accuracy {best.score:.2%}: {shown}, "
          f"epochs={epochs}")
    started = time.perf_counter()
    accuracy, _ = digits.retrain(params, epochs)
    print(f"retrained on all {len(parts['train'][0])} training images for {epochs} epochs "
          f"({time.perf_counter() - started:.2f} s): test accuracy {accuracy:.2%}")
    return 0


def main(argv=None):
    args = _parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    if args.command == "digits":
        return digits_main(args)
    if args.command == "show":
        from .results import SearchResult
        result = SearchResult.load(args.journal)
        print(f"{result.kind.replace('_', ' ')}: {len(result.trials)} trials "
              f"({len(result.failed())} failed), mode={result.mode}")
        print(result.table(limit=args.limit))
        if result.best is not None:
            print(f"best: trial {result.best.number}, score {result.best.score:.6g}, "
                  f"params {result.best.params}")
        if args.plot:
            result.plot(args.plot)
            print(f"plot written to {args.plot}")
        return 0
    from . import measure
    every = not (args.overhead or args.throughput or args.digits or args.anchors)
    if args.overhead or every:
        measure.overhead()
    if args.throughput or every:
        measure.throughput(args.trials, args.seconds)
    if args.digits or every:
        measure.digits_throughput(args.trials)
    if args.anchors or every:
        measure.anchors(args.anchor_trials)
    return 0


if __name__ == "__main__":
    sys.exit(main())
