"""``SearchResult.plot(path)``: score against each sampled hyperparameter, as PNG.

One panel per parameter the search varied.  Log-uniform parameters (and
``integer(log=True)``) get a log x axis; a ``one_minus_loguniform`` beta is
plotted against 1 - beta on a log axis, reversed so beta grows to the right
(0.9, 0.99, 0.999 evenly spaced, as they were sampled); a choice gets one
column per option.  Coarse-to-fine rounds and halving rungs are coloured,
later ones darker; failed trials are left out (the table lists them); the
best trial is ringed.  Uses Matplotlib's object API with the Agg canvas, so
it neither needs a display nor changes pyplot's state.

Tests: ``tests/test_tune_results.py``.
"""

import os

from .space import is_distribution

MISSING = ("plot: Matplotlib is needed to plot a search; install it with "
           "`pip install matplotlib` (or `pip install fastnn[plot]`). "
           "result.table() shows the same trials as text.")


def plot_result(result, path):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError(MISSING) from None
    space = result.spaces[0] if result.spaces else {}
    names = [name for name, dist in space.items() if is_distribution(dist)]
    if not names:
        raise ValueError("result: the search varied no parameter; there is nothing to plot")
    finished = result.finished()
    columns = min(3, len(names))
    rows = -(-len(names) // columns)
    figure = Figure(figsize=(4.2 * columns, 3.4 * rows), layout="constrained")
    FigureCanvasAgg(figure)
    rounds = sorted({trial.round for trial in finished}) or [0]
    from matplotlib import colormaps
    colours = colormaps["viridis"]
    best = result.best
    label = {"coarse_to_fine": "round", "successive_halving": "rung"}.get(result.kind)
    for index, name in enumerate(names):
        axes = figure.add_subplot(rows, columns, index + 1)
        dist = space[name]
        for r in rounds:
            trials = [trial for trial in finished if trial.round == r]
            if not trials:
                continue
            xs = [_position(dist, trial.params[name]) for trial in trials]
            colour = colours(0.15 + 0.7 * rounds.index(r) / max(1, len(rounds) - 1))
            tag = None
            if label and index == 0:
                tag = f"{label} {r}" if result.kind != "successive_halving" else \
                    f"budget {trials[0].budget}"
            axes.scatter(xs, [trial.score for trial in trials], s=18, color=colour,
                         alpha=0.8, label=tag)
        if best is not None:
            axes.scatter([_position(dist, best.params[name])], [best.score], s=90,
                         facecolors="none", edgecolors="crimson", linewidths=1.5,
                         label="best" if index == 0 else None)
        _axis(axes, dist, name)
        axes.set_ylabel("score" if index % columns == 0 else "")
        axes.grid(alpha=0.3)
        if index == 0 and (label or best is not None):
            axes.legend(fontsize="small")
    figure.suptitle(f"{result.kind.replace('_', ' ')}: {len(result.trials)} trials, "
                    f"mode={result.mode}")
    figure.savefig(os.fspath(path), dpi=100, format="png")
    return path


def _position(dist, value):
    if dist.kind == "one_minus_loguniform":
        return 1.0 - value
    if dist.kind == "choice":
        return dist.options.index(value)
    return value


def _axis(axes, dist, name):
    if dist.kind == "one_minus_loguniform":
        axes.set_xscale("log")
        axes.invert_xaxis()
        axes.set_xlabel(f"1 - {name} (log; {name} grows to the right)")
    elif dist.kind == "choice":
        axes.set_xticks(range(len(dist.options)), [str(o) for o in dist.options])
        axes.set_xlim(-0.5, len(dist.options) - 0.5)
        axes.set_xlabel(name)
    elif dist.log_scale:
        axes.set_xscale("log")
        axes.set_xlabel(f"{name} (log)")
    else:
        axes.set_xlabel(name)
