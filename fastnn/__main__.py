"""Command line: ``python -m fastnn {bench,train,tune,warmup,info} [options]``."""

import argparse
import sys


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m fastnn {bench,train,tune,warmup,info} [options]\n\n"
              "  bench   side-by-side timing of every kernel on every available backend,\n"
              "          NumPy and (when installed) PyTorch; 'bench --help' for options\n"
              "  train   train an example network: 'train digits --help'\n"
              "  tune    hyperparameter search: 'tune digits' tunes the digits MLP;\n"
              "          'tune show JOURNAL', 'tune measure'; 'tune --help'\n"
              "  warmup  compile every JIT kernel now, so later calls pay no compilation\n"
              "  info    every backend, its status or reason, and what it runs with")
        return 0
    command, rest = argv[0], argv[1:]
    if command == "bench":
        from fastnn.bench.cli import main as bench_main
        return bench_main(rest)
    if command == "train":
        from fastnn.examples.cli import main as train_main
        return train_main(rest)
    if command == "tune":
        from fastnn.tune.cli import main as tune_main
        return tune_main(rest)
    if command == "info":
        from fastnn._info import main as info_main
        return info_main()
    if command == "warmup":
        parser = argparse.ArgumentParser(prog="python -m fastnn warmup")
        parser.add_argument("--backend", action="append",
                            help="backend to compile (default: every available one)")
        args = parser.parse_args(rest)
        import fastnn
        for name, seconds in fastnn.warmup(args.backend).items():
            print(f"{name}: compiled in {seconds:.1f} s")
        return 0
    print(f"python -m fastnn: unknown command {command!r} "
          f"(expected 'bench', 'train', 'tune', 'warmup' or 'info')",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
