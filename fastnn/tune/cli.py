"""Command line of fastnn.tune: ``python -m fastnn.tune {show,measure}``.

    show JOURNAL [--limit N] [--plot PATH]   the table of a saved search or journal
                                              (best first), and its plot
    measure [--overhead] [--throughput] [--trials N] [--seconds S]
                                              the figures of ``measure.py``; run
                                              under the exclusive lock

``main(argv) -> exit code`` (0, or 2 on a usage error), so that
``python -m fastnn tune ...`` can hand its arguments here.
"""

import argparse
import sys


def _parser():
    parser = argparse.ArgumentParser(prog="python -m fastnn tune",
                                     description="hyperparameter search with fastnn.tune")
    commands = parser.add_subparsers(dest="command", required=True)
    show = commands.add_parser("show", help="print the table of a saved search or journal")
    show.add_argument("journal", help="a file written by journal= or SearchResult.save")
    show.add_argument("--limit", type=int, default=None, help="at most this many rows")
    show.add_argument("--plot", metavar="PATH", help="also plot score against each parameter (PNG)")
    measure = commands.add_parser("measure", help="per-trial overhead and parallel throughput")
    measure.add_argument("--overhead", action="store_true", help="only the per-trial overhead")
    measure.add_argument("--throughput", action="store_true", help="only the parallel throughput")
    measure.add_argument("--trials", type=int, default=16, help="trials of the throughput search")
    measure.add_argument("--seconds", type=float, default=1.0,
                         help="about how long one throughput trial takes serially")
    return parser


def main(argv=None):
    args = _parser().parse_args(sys.argv[1:] if argv is None else list(argv))
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
    both = not (args.overhead or args.throughput)
    if args.overhead or both:
        measure.overhead()
    if args.throughput or both:
        measure.throughput(args.trials, args.seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
