"""The record of a search: trials, the result, and the journal they live in.

A ``Trial`` is one evaluation of the objective, plain data only::

    number   int    unique within the search, fixed before it runs
    params   dict   the configuration (JSON values)
    score    float  None unless status == "ok"
    metrics  dict   whatever else the objective returned (JSON values)
    status   str    "ok" | "failed"
    error    str    why it failed ("ValueError: ...", "TrialTimeout: ..."), else None
    seconds  float  wall time of the objective where it ran
    round    int    coarse-to-fine round, or successive-halving rung (0 otherwise)
    config   int    the configuration's index: the same for one configuration
                    trained at several budgets by successive halving
    budget          what the objective was given (successive halving), else None

The journal is a JSON-lines file, one object per line, each with a "type":

    {"type": "search", "format": "fastnn.tune/1", "kind": "random_search",
     "settings": {"seed": 0, "mode": "max", "n_trials": 20, "space": {...}}}
    {"type": "round", "round": 0, "space": {...}}        the space a round samples
    {"type": "trial", "number": 0, "params": {...}, "score": 0.93, ...}

The header comes first; round and trial lines follow in the order things
happened (trials in the order they finished).  A search appends each trial
as it finishes and flushes it to the operating system, so a killed process
loses only the trials that were running.  A line without its final newline
is a write cut short by a kill: it is ignored, and cut off before the file
is appended to again.  ``SearchResult.save`` writes the same format and
``SearchResult.load`` reads a saved result or a journal.  No pickles: a
journal from elsewhere is data, not code.

Tests: ``tests/test_tune_results.py`` and ``tests/test_tune_resume.py``.
"""

import dataclasses
import json
import math
import os

from .space import is_distribution, space_from_json, space_to_json

__all__ = ["Trial", "SearchResult", "JOURNAL_FORMAT"]

JOURNAL_FORMAT = "fastnn.tune/1"
KINDS = ("random_search", "coarse_to_fine", "successive_halving")


@dataclasses.dataclass(frozen=True)
class Trial:
    number: int
    params: dict
    score: float = None
    metrics: dict = dataclasses.field(default_factory=dict)
    status: str = "ok"
    error: str = None
    seconds: float = 0.0
    round: int = 0
    config: int = None
    budget: object = None

    @property
    def ok(self):
        return self.status == "ok"

    def to_json(self):
        data = {"type": "trial"}
        data.update(dataclasses.asdict(self))
        return data

    @classmethod
    def from_json(cls, data):
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in fields})

    def same_outcome(self, other):
        """Equal in everything but the wall time (what reproducibility promises)."""
        return dataclasses.replace(self, seconds=0.0) == dataclasses.replace(other, seconds=0.0)


def sort_key(mode):
    """Key ordering finished trials best first under ``mode``; ties by number."""
    sign = -1.0 if mode == "max" else 1.0
    return lambda trial: (sign * trial.score, trial.number)


class SearchResult:
    """What a search found: every trial, the spaces it sampled, the best trial.

    ``trials`` are in trial-number order; ``sorted_trials()`` gives them best
    first (failed ones last).  ``spaces`` is the space of each round (one
    for a random search or successive halving, one per round for coarse to
    fine).  ``interrupted`` is True when Ctrl-C stopped the search early.
    """

    def __init__(self, kind, settings, trials, spaces, interrupted=False):
        self.kind = kind
        self.settings = settings
        self.trials = sorted(trials, key=lambda trial: trial.number)
        self.spaces = list(spaces)
        self.interrupted = interrupted

    @property
    def mode(self):
        return self.settings["mode"]

    def finished(self):
        """The trials that returned a score."""
        return [trial for trial in self.trials if trial.ok]

    def failed(self):
        return [trial for trial in self.trials if not trial.ok]

    def sorted_trials(self):
        """Every trial, best first; failed trials last, by number."""
        return (sorted(self.finished(), key=sort_key(self.mode))
                + [trial for trial in self.trials if not trial.ok])

    @property
    def best(self):
        """The best finished trial under ``mode``, or None if none finished.

        For successive halving, the best among the trials at the largest
        budget that any trial finished at: a score after 1 epoch is not
        comparable with one after 27.
        """
        candidates = self.finished()
        if not candidates:
            return None
        if self.kind == "successive_halving":
            top = max(trial.round for trial in candidates)
            candidates = [trial for trial in candidates if trial.round == top]
        return min(candidates, key=sort_key(self.mode))

    def __repr__(self):
        best = self.best
        shown = "none finished" if best is None else f"best score {best.score:.6g}"
        flag = ", interrupted" if self.interrupted else ""
        return f"<SearchResult {self.kind}: {len(self.trials)} trials, {shown}{flag}>"

    def rows(self):
        """One flat dict per trial, best first: a table to sort or hand to pandas."""
        rows = []
        for trial in self.sorted_trials():
            row = {"number": trial.number, "score": trial.score, "status": trial.status}
            if self.kind != "random_search":
                row["round"] = trial.round
            if self.kind == "successive_halving":
                row["config"] = trial.config
                row["budget"] = trial.budget
            row.update(trial.params)
            row.update({f"metrics.{key}": value for key, value in trial.metrics.items()})
            row["seconds"] = trial.seconds
            row["error"] = trial.error
            rows.append(row)
        return rows

    def table(self, limit=None):
        """A text table of the trials, best first (``limit``: at most that many rows)."""
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)
                                  or limit < 1):
            raise ValueError(f"limit: expected a positive integer or None, got {limit!r}")
        space = self.spaces[-1] if self.spaces else {}
        varied = [name for name, dist in space.items() if is_distribution(dist)]
        columns = ["rank", "number"]
        if self.kind == "coarse_to_fine":
            columns.append("round")
        if self.kind == "successive_halving":
            columns += ["config", "budget"]
        columns += ["score"] + varied
        metric_names = sorted({key for trial in self.trials for key in trial.metrics
                               if _is_scalar(trial.metrics[key])} - set(columns))
        columns += metric_names + ["seconds", "status"]
        lines = []
        for rank, trial in enumerate(self.sorted_trials(), start=1):
            if limit is not None and rank > limit:
                break
            cells = {"rank": str(rank) if trial.ok else "-", "number": str(trial.number),
                     "round": str(trial.round), "config": str(trial.config),
                     "budget": _format(trial.budget), "score": _format(trial.score),
                     "seconds": f"{trial.seconds:.3f}",
                     "status": trial.status if trial.ok else f"failed: {trial.error}"}
            for name in varied:
                cells[name] = _format(trial.params.get(name))
            for name in metric_names:
                cells[name] = _format(trial.metrics.get(name))
            lines.append([cells[column] for column in columns])
        widths = [max([len(column)] + [len(line[i]) for line in lines])
                  for i, column in enumerate(columns)]
        # Every column but the last (status, free text) is right-aligned.
        def render(cells):
            parts = [cell.rjust(width) for cell, width in zip(cells[:-1], widths[:-1])]
            return "  ".join(parts + [cells[-1]]).rstrip()
        out = [render(columns), render(["-" * width for width in widths])]
        out += [render(line) for line in lines]
        total = len(self.trials)
        if limit is not None and total > limit:
            out.append(f"... {total - limit} more")
        return "\n".join(out)

    def plot(self, path):
        """Score against each sampled hyperparameter, written to ``path`` (PNG)."""
        from .plot import plot_result
        return plot_result(self, path)

    # --- the journal format ---------------------------------------------

    def header(self):
        return {"type": "search", "format": JOURNAL_FORMAT, "kind": self.kind,
                "settings": self.settings}

    def save(self, path):
        """Write the whole result to ``path`` in the journal format (replacing the file)."""
        lines = [self.header()]
        lines += [{"type": "round", "round": r, "space": space_to_json(space)}
                  for r, space in enumerate(self.spaces)]
        lines += [trial.to_json() for trial in self.trials]
        tmp = f"{os.fspath(path)}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            for line in lines:
                f.write(_dumps(line) + "\n")
        os.replace(tmp, path)

    @classmethod
    def load(cls, path):
        """Read a saved result or a journal (a torn last line is ignored)."""
        records, _ = read_journal(path)
        if not records or records[0].get("type") != "search":
            raise ValueError(f"path: {os.fspath(path)!r} is not a fastnn.tune journal "
                             f"(its first line is not a search header)")
        header = records[0]
        spaces, trials = {}, {}
        for record in records[1:]:
            if record.get("type") == "round":
                spaces[record["round"]] = space_from_json(record["space"])
            elif record.get("type") == "trial":
                trials[record["number"]] = Trial.from_json(record)
        if not spaces:
            spaces[0] = space_from_json(header["settings"]["space"])
        return cls(header["kind"], header["settings"], list(trials.values()),
                   [spaces[r] for r in sorted(spaces)])


def _is_scalar(value):
    return value is None or isinstance(value, (str, int, float, bool))


def _format(value):
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return str(value)
    return f"{value:.6g}" if math.isfinite(value) else str(value)


def _dumps(record):
    # allow_nan: a metric may be NaN; Python's json reads NaN back.
    return json.dumps(record, separators=(",", ":"))


def read_journal(path):
    """``(records, good_bytes)``: the complete lines of a journal and where they end.

    A missing file has no records.  A last line without its newline (a
    write cut short) is left out; a line before it that is not JSON means
    the file is not a journal, which is a ValueError.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return [], 0
    end = data.rfind(b"\n") + 1
    records = []
    for number, line in enumerate(data[:end].split(b"\n")[:-1], start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            raise ValueError(f"journal: line {number} of {os.fspath(path)!r} is not JSON; "
                             f"is this a fastnn.tune journal?") from None
        if not isinstance(record, dict):
            raise ValueError(f"journal: line {number} of {os.fspath(path)!r} is not a "
                             f"JSON object; is this a fastnn.tune journal?")
        records.append(record)
    return records, end


class Journal:
    """Appends a search's records to its JSON-lines file as they happen."""

    def __init__(self, path, kind, settings):
        self.path = path
        records, good_bytes = read_journal(path)
        header = {"type": "search", "format": JOURNAL_FORMAT, "kind": kind,
                  "settings": settings}
        if records:
            found = records[0]
            if found.get("type") != "search" or found.get("format") != JOURNAL_FORMAT:
                raise ValueError(f"journal: {os.fspath(path)!r} does not start with a "
                                 f"{JOURNAL_FORMAT} search header")
            # Compare as JSON, the way the settings will read back.
            if json.loads(_dumps(header)) != found:
                raise ValueError(f"journal: {os.fspath(path)!r} holds a different search "
                                 f"({_difference(found, header)}); use another path to "
                                 f"start a new one")
        self.trials = {}
        for record in records[1:]:
            if record.get("type") == "trial":
                trial = Trial.from_json(record)
                self.trials[trial.number] = trial
        self.rounds = {record["round"] for record in records[1:] if record.get("type") == "round"}
        self._file = open(path, "r+b" if records or good_bytes else "wb")
        self._file.truncate(good_bytes)         # drop a torn last line
        self._file.seek(good_bytes)
        if not records:
            self._write(header)

    def _write(self, record):
        self._file.write((_dumps(record) + "\n").encode("utf-8"))
        self._file.flush()

    def add_round(self, number, space):
        if number not in self.rounds:
            self.rounds.add(number)
            self._write({"type": "round", "round": number, "space": space_to_json(space)})

    def add_trial(self, trial):
        self.trials[trial.number] = trial
        self._write(trial.to_json())

    def close(self):
        self._file.close()


def _difference(found, wanted):
    if found.get("kind") != wanted["kind"]:
        return f"a {found.get('kind')} in the file, a {wanted['kind']} asked for"
    old, new = found.get("settings", {}), json.loads(_dumps(wanted["settings"]))
    keys = [key for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)]
    return "different " + ", ".join(keys)
