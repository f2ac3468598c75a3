"""``python -m fastnn train digits [options]``: the digits example from the command line.

Trains the example's MLP (``fastnn/examples/digits.py``) on every available
backend and prints per epoch the training loss, the test loss and accuracy
and the seconds, then the totals and when 97% test accuracy was first
reached.  ``--compare-torch`` and ``--compare-sklearn`` run the same task in
PyTorch and scikit-learn side by side; ``--compare-batchnorm`` shows what
BatchNorm buys across learning rates; ``--plot`` writes learning curves.
"""

import argparse
import math
import sys

import fastnn

from . import digits

EXAMPLES = ("digits",)


def _parser():
    parser = argparse.ArgumentParser(
        prog="python -m fastnn train",
        description="Train an example network on fastnn's layers and kernels.")
    parser.add_argument("example", choices=EXAMPLES, help="the example to run")
    parser.add_argument("--epochs", type=int, default=30, help="epochs (default 30)")
    parser.add_argument("--lr", type=float, default=digits.LEARNING_RATE,
                        help=f"Adam's learning rate (default {digits.LEARNING_RATE})")
    parser.add_argument("--seed", type=int, default=0, help="split, weights and batches")
    parser.add_argument("--backend", action="append",
                        help="backend to train on (repeatable; default: every available one)")
    parser.add_argument("--threads", type=int, default=None, help="threads (default: all)")
    parser.add_argument("--no-batchnorm", action="store_true",
                        help="the same network without BatchNorm (Linears with biases)")
    parser.add_argument("--compare-batchnorm", action="store_true",
                        help="with and without BatchNorm at lr 1e-3, 1e-2, 1e-1, 1")
    parser.add_argument("--compare-torch", action="store_true",
                        help="the same model and schedule in PyTorch, side by side")
    parser.add_argument("--compare-sklearn", action="store_true",
                        help="scikit-learn's MLPClassifier (256, 256) on the same split")
    parser.add_argument("--plot", metavar="PNG", help="write the learning curves here")
    parser.add_argument("--progress", action="store_true", help="progress bars per epoch")
    return parser


def _fmt_reached(reached):
    if reached is None:
        return "not reached"
    epoch, seconds = reached
    return f"epoch {epoch}, after {seconds:.3f} s of training"


def main(argv=None):
    args = _parser().parse_args(argv)
    if args.epochs < 1:
        print("--epochs: expected a positive integer", file=sys.stderr)
        return 2
    if args.threads is not None:
        fastnn.set_num_threads(args.threads)
    try:
        data = digits.load_digits(args.seed)
    except RuntimeError as exc:
        print(f"python -m fastnn train digits: {exc}", file=sys.stderr)
        return 2
    x_train, _, x_test, _ = data
    batchnorm = not args.no_batchnorm
    available = [n for n, s in fastnn.backends().items() if s == "available"]
    names = args.backend or available
    print(f"digits: {len(x_train)} training and {len(x_test)} test images, 64 features, "
          f"10 classes (stratified 80/20 split, seed {args.seed})")
    print(f"model: {digits.describe(digits.build_model(batchnorm))}; softmax cross-entropy, "
          f"Adam lr {args.lr:g}, batch {digits.BATCH}, {args.epochs} epochs, float32, "
          f"{fastnn.get_num_threads()} threads")
    results = {}
    for name in names:
        model, history = digits.train_fastnn(data, epochs=args.epochs, lr=args.lr,
                                             batchnorm=batchnorm, seed=args.seed,
                                             backend=name, progress=args.progress)
        results[name] = history
        print(f"\nfastnn, backend {name}")
        print("epoch  train loss  test loss  test acc  seconds")
        for e, l, vl, va, s in zip(history.epoch, history.loss, history.val_loss,
                                   history.val_accuracy, history.seconds):
            print(f"{e:5d}  {l:10.4f}  {vl:9.4f}  {va:8.2%}  {s:7.4f}")
        total = sum(history.seconds)
        reached = digits.first_reaching(history.val_accuracy, history.seconds,
                                        digits.TARGET_ACCURACY)
        print(f"total {total:.3f} s of training ({total / len(history) * 1e3:.1f} ms per "
              f"epoch); final test accuracy {history.val_accuracy[-1]:.2%}; 97%: "
              f"{_fmt_reached(reached)}")
    if args.plot:
        first = results[names[0]]
        first.plot(args.plot)
        print(f"\nlearning curves ({names[0]}) written to {args.plot}")
    if args.compare_torch:
        _compare_torch(data, args, batchnorm, results)
    if args.compare_sklearn:
        _compare_sklearn(data, args, results)
    if args.compare_batchnorm:
        _compare_batchnorm(data, args)
    return 0


def _fastest(results):
    """(backend, History) whose run reached 97% soonest (or trained fastest)."""
    def key(item):
        reached = digits.first_reaching(item[1].val_accuracy, item[1].seconds,
                                        digits.TARGET_ACCURACY)
        return (reached is None, reached[1] if reached else sum(item[1].seconds))
    return min(results.items(), key=key)


def _compare_torch(data, args, batchnorm, results):
    try:
        import torch
    except ImportError:
        print("\n--compare-torch: PyTorch is not installed; skipped")
        return
    name, history = _fastest(results)
    ours = digits.first_reaching(history.val_accuracy, history.seconds, digits.TARGET_ACCURACY)
    print(f"\nside by side, the same model, initial weights, batches and schedule "
          f"(PyTorch {torch.__version__} in its own process, {fastnn.get_num_threads()} "
          f"threads):")
    print("library                    97% at epoch  seconds to 97%  all epochs (s)  "
          "final acc  x fastnn to 97%")
    rows = [(f"fastnn[{name}]", ours, sum(history.seconds), history.val_accuracy[-1])]
    for fused in (False, True):
        seconds, accuracy, _ = digits.train_torch_in_child(
            epochs=args.epochs, lr=args.lr, batchnorm=batchnorm, seed=args.seed, fused=fused)
        rows.append((f"torch Adam{' fused' if fused else ''}",
                     digits.first_reaching(accuracy, seconds, digits.TARGET_ACCURACY),
                     sum(seconds), accuracy[-1]))
    for label, reached, total, final in rows:
        ratio = (f"{reached[1] / ours[1]:.2f}" if reached and ours else "-")
        epoch = f"{reached[0]}" if reached else "-"
        seconds_to = f"{reached[1]:.3f}" if reached else "-"
        print(f"{label:26s} {epoch:>12s}  {seconds_to:>14s}  {total:14.3f}  {final:9.2%}  "
              f"{ratio:>15s}")
    torch_best = [r for r in rows[1:] if r[1]]
    if ours and torch_best:
        best = min(torch_best, key=lambda r: r[1][1])
        print(f"fastnn reaches 97% in {ours[1] / best[1][1]:.2f} of the faster PyTorch's "
              f"time ({best[0]}); 30-epoch totals {rows[0][2]:.3f} s against "
              f"{best[2]:.3f} s")


def _compare_sklearn(data, args, results):
    try:
        seconds, accuracy, iterations = digits.train_sklearn(data, seed=args.seed)
    except ImportError:
        print("\n--compare-sklearn: scikit-learn is not installed; skipped")
        return
    name, history = _fastest(results)
    ours = sum(history.seconds)
    print(f"\nscikit-learn MLPClassifier(256, 256), its defaults: {accuracy:.2%} test "
          f"accuracy in {seconds:.3f} s ({iterations} iterations); fastnn[{name}]: "
          f"{history.val_accuracy[-1]:.2%} in {ours:.3f} s")


def _compare_batchnorm(data, args):
    print(f"\nwith and without BatchNorm (fastnn, {args.epochs} epochs, Adam, batch "
          f"{digits.BATCH}; epochs to 95% test accuracy):")
    print("      lr   with BN: final acc  epochs to 95%   without: final acc  epochs to 95%")
    for lr, with_bn, without in digits.compare_batchnorm(data, epochs=args.epochs,
                                                         seed=args.seed):
        cells = []
        for final, epochs in (with_bn, without):
            shown = "diverged" if math.isnan(final) else f"{final:.2%}"
            cells.append(f"{shown:>18s}  {('-' if epochs is None else str(epochs)):>13s}")
        print(f"{lr:8g}  " + "   ".join(cells))
