"""Search spaces: the distributions hyperparameters are drawn from.

A space is a plain ``dict`` from a parameter's name to a distribution
(``uniform``, ``loguniform``, ``one_minus_loguniform``, ``integer``,
``choice``) or to a constant (any JSON value: a number, string, bool, None,
or lists and dicts of those), e.g.::

    {"lr": loguniform(1e-4, 1), "beta1": one_minus_loguniform(0.8, 0.999),
     "width": integer(16, 512, log=True), "batchnorm": choice([True, False]),
     "epochs": 20}

Each distribution is a small immutable value object: it knows its bounds,
how to draw one value from a NumPy generator, how to map values to the space
it is uniform in (``to_unit``: linear, log10, or log10(1 - beta)) and back,
and how to write itself as JSON.  Drawing is kept apart from the searches
and the record of trials (``sample_params`` is the only sampler).

Reproducibility: the draws of one trial come from a seed sequence built
from (seed, stream, trial number, parameter name), never from one shared
stream, so the same seed gives the same configurations whatever runs the
trials and in whatever order they finish, and adding a parameter to a space
leaves the draws of the others unchanged.

Tests: ``tests/test_tune_space.py`` (statistical checks of every
distribution, with their false-alarm rates, and every validation error).
"""

import json
import math
import zlib

import numpy as np

__all__ = [
    "Uniform", "LogUniform", "OneMinusLogUniform", "Integer", "Choice",
    "uniform", "loguniform", "one_minus_loguniform", "integer", "choice",
    "validate_space", "sample_params", "space_to_json", "space_from_json",
]


def _number(param, what, value):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{param}: expected a real number for {what}, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{param}: expected a finite {what}, got {value!r}")
    return value


def _whole(param, what, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{param}: expected an integer for {what}, got {value!r}")
    return int(value)


class Distribution:
    """Base of the numeric distributions: uniform over ``[to_unit(low), to_unit(high)]``.

    Subclasses define ``to_unit`` / ``from_unit`` (the monotone map to the
    space the distribution is uniform in) and ``kind`` (its JSON name).
    ``log_scale`` says whether a plot should use a log axis.

    A distribution is checked when its space is (``validate_space``, which
    every search calls first), so that a bad bound is reported with the name
    of its parameter: ``{"lr": loguniform(0, 1)}`` is ``ValueError("lr: ...")``.
    """

    kind = None
    log_scale = False
    __slots__ = ("low", "high")

    def __init__(self, low, high):
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)

    def __setattr__(self, name, value):
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __eq__(self, other):
        return type(self) is type(other) and self.to_json() == other.to_json()

    def __hash__(self):
        return hash(json.dumps(self.to_json(), sort_keys=True))

    def __repr__(self):
        return f"{self.kind}({self.low!r}, {self.high!r})"

    def checked(self, param):
        """This distribution with float bounds, or an error naming ``param``."""
        low = _number(param, "low", self.low)
        high = _number(param, "high", self.high)
        if not low < high:
            raise ValueError(f"{param}: {self.kind} needs low < high, got low={low!r}, high={high!r}")
        self._check_domain(param, low, high)
        return type(self)(low, high)

    def _check_domain(self, param, low, high):
        pass

    def draw(self, rng):
        lo, hi = self.to_unit(self.low), self.to_unit(self.high)
        value = self.from_unit(lo + (hi - lo) * rng.random())
        # Rounding in from_unit may step a hair outside the bounds.
        return min(max(value, self.low), self.high)

    def with_bounds(self, low, high):
        return type(self)(float(low), float(high))

    def to_json(self):
        return {"distribution": self.kind, "low": self.low, "high": self.high}


class Uniform(Distribution):
    """Uniform on ``[low, high]``."""

    kind = "uniform"
    __slots__ = ()

    def to_unit(self, value):
        return value

    def from_unit(self, t):
        return float(t)


class LogUniform(Distribution):
    """log10(value) uniform on ``[log10(low), log10(high)]``: as many draws per decade."""

    kind = "loguniform"
    log_scale = True
    __slots__ = ()

    def _check_domain(self, param, low, high):
        if low <= 0:
            raise ValueError(f"{param}: loguniform needs low > 0, got low={low!r}")

    def to_unit(self, value):
        return math.log10(value)

    def from_unit(self, t):
        return float(10.0 ** t)


class OneMinusLogUniform(Distribution):
    """log10(1 - value) uniform: for averaging coefficients such as Adam's beta.

    ``one_minus_loguniform(0.9, 0.999)`` spends as many draws in
    [0.99, 0.999] as in [0.9, 0.99].  ``to_unit`` is decreasing here.
    """

    kind = "one_minus_loguniform"
    log_scale = True
    __slots__ = ()

    def _check_domain(self, param, low, high):
        if not (0 < low and high < 1):
            raise ValueError(f"{param}: one_minus_loguniform needs 0 < low < high < 1, "
                             f"got low={low!r}, high={high!r}")

    def to_unit(self, value):
        return math.log10(1.0 - value)

    def from_unit(self, t):
        return float(1.0 - 10.0 ** t)


class Integer(Distribution):
    """An integer in ``[low, high]`` (both included).

    ``log=False``: every integer equally likely.  ``log=True`` (needs
    low >= 1): a log-uniform x on [low, high + 1) rounded down, so k has
    probability log((k + 1) / k) / log((high + 1) / low) and each octave of
    widths gets about the same share.  ``low == high`` arises only where a
    coarse-to-fine round has narrowed a range to one value.
    """

    kind = "integer"
    __slots__ = ("log",)

    def __init__(self, low, high, log=False):
        super().__init__(low, high)
        object.__setattr__(self, "log", log)

    @property
    def log_scale(self):
        return self.log

    def __repr__(self):
        return f"integer({self.low!r}, {self.high!r}, log={self.log!r})"

    def checked(self, param, allow_single=False):
        low = _whole(param, "low", self.low)
        high = _whole(param, "high", self.high)
        if not isinstance(self.log, (bool, np.bool_)):
            raise TypeError(f"{param}: expected True or False for log, got {self.log!r}")
        if low > high or (low == high and not allow_single):
            raise ValueError(f"{param}: integer needs low < high, got low={low!r}, high={high!r}")
        if self.log and low < 1:
            raise ValueError(f"{param}: integer(log=True) needs low >= 1, got low={low!r}")
        return Integer(low, high, bool(self.log))

    def to_unit(self, value):
        return math.log10(value) if self.log else float(value)

    def from_unit(self, t):
        return 10.0 ** t if self.log else float(t)

    def draw(self, rng):
        if not self.log:
            return int(rng.integers(self.low, self.high + 1))
        lo, hi = math.log10(self.low), math.log10(self.high + 1)
        value = math.floor(10.0 ** (lo + (hi - lo) * rng.random()))
        return int(min(max(value, self.low), self.high))

    def with_bounds(self, low, high):
        return Integer(int(low), int(high), self.log)

    def to_json(self):
        return {"distribution": "integer", "low": self.low, "high": self.high, "log": self.log}


def _check_json_value(param, value):
    """Raise unless ``value`` survives a JSON round trip unchanged."""
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        raise TypeError(f"{param}: expected a distribution or plain JSON data (numbers, "
                        f"strings, bools, None, lists and dicts of them), got {value!r}") from None
    back = json.loads(text)
    if back != value or type(back) is not type(value):
        raise TypeError(f"{param}: expected a constant that JSON keeps unchanged "
                        f"(lists, not tuples; string keys), got {value!r}")


class Choice:
    """One of ``options``, each equally likely; options are JSON scalars."""

    kind = "choice"
    log_scale = False
    __slots__ = ("options",)

    def __init__(self, options):
        if isinstance(options, (list, tuple)):
            options = tuple(options)
        object.__setattr__(self, "options", options)

    def __setattr__(self, name, value):
        raise AttributeError("Choice is immutable")

    def __eq__(self, other):
        return type(other) is Choice and self.to_json() == other.to_json()

    def __hash__(self):
        return hash(json.dumps(self.to_json()))

    def __repr__(self):
        return f"choice({list(self.options)!r})"

    def checked(self, param):
        options = self.options
        if not isinstance(options, tuple):
            raise TypeError(f"{param}: choice expects a list of options, got {options!r}")
        if not options:
            raise ValueError(f"{param}: choice needs at least one option, got an empty list")
        for option in options:
            if not (option is None or isinstance(option, (str, bool, int, float))):
                raise TypeError(f"{param}: each choice option must be a str, int, float, bool "
                                f"or None, got {option!r}")
            if isinstance(option, float) and not math.isfinite(option):
                raise ValueError(f"{param}: choice options must be finite, got {option!r}")
        keys = [json.dumps(o) for o in options]
        if len(set(keys)) != len(keys):
            raise ValueError(f"{param}: choice options must be distinct, got {list(options)!r}")
        return self

    def draw(self, rng):
        return self.options[int(rng.integers(len(self.options)))]

    def to_json(self):
        return {"distribution": "choice", "options": list(self.options)}


def uniform(low, high):
    """A float uniform on ``[low, high]``."""
    return Uniform(low, high)


def loguniform(low, high):
    """A float whose log10 is uniform: equal draws per decade (a learning rate)."""
    return LogUniform(low, high)


def one_minus_loguniform(low, high):
    """A float beta in (0, 1) whose 1 - beta is log-uniform (an averaging coefficient)."""
    return OneMinusLogUniform(low, high)


def integer(low, high, log=False):
    """An integer in ``[low, high]`` inclusive, uniform or (``log=True``) log-uniform."""
    return Integer(low, high, log)


def choice(options):
    """One of ``options`` (JSON scalars), each equally likely."""
    return Choice(options)


DISTRIBUTIONS = (Uniform, LogUniform, OneMinusLogUniform, Integer, Choice)


def validate_space(space, name="space"):
    """Check ``space``: a copy with float bounds, or an error naming the bad parameter."""
    if not isinstance(space, dict):
        raise TypeError(f"{name}: expected a dict of parameter names to distributions "
                        f"or constants, got {type(space).__name__}")
    if not space:
        raise ValueError(f"{name}: expected at least one parameter, got an empty dict")
    checked = {}
    for param, dist in space.items():
        if not isinstance(param, str):
            raise TypeError(f"{name}: parameter names must be strings, got {param!r}")
        if isinstance(dist, DISTRIBUTIONS):
            checked[param] = dist.checked(param)
        else:
            _check_json_value(f"{param}", dist)
            checked[param] = dist
    return checked


def is_distribution(value):
    return isinstance(value, DISTRIBUTIONS)


def _param_key(param):
    # A stable 32-bit key per name (Python's hash() is salted per process).
    return zlib.crc32(param.encode("utf-8"))


def sample_params(space, seed, stream, number):
    """The configuration of trial ``number`` of ``stream``, drawn for ``seed``.

    ``stream`` separates draws that must not coincide (the rounds of a
    coarse-to-fine search).  Values are plain Python (float, int, or the
    option itself), in the order of the space.
    """
    params = {}
    for param, dist in space.items():
        if isinstance(dist, DISTRIBUTIONS):
            sequence = np.random.SeedSequence([seed, stream, number, _param_key(param)])
            params[param] = dist.draw(np.random.default_rng(sequence))
        else:
            params[param] = dist
    return params


def space_to_json(space):
    """A JSON-ready dict: each distribution as its ``to_json()``, each constant as ``{"constant": v}``."""
    return {param: dist.to_json() if isinstance(dist, DISTRIBUTIONS) else {"constant": dist}
            for param, dist in space.items()}


def space_from_json(data):
    """The inverse of ``space_to_json``."""
    space = {}
    for param, entry in data.items():
        if "constant" in entry:
            space[param] = entry["constant"]
            continue
        kind = entry.get("distribution")
        if kind == "choice":
            space[param] = Choice(entry["options"]).checked(param)
        elif kind == "integer":
            space[param] = Integer(entry["low"], entry["high"],
                                   entry.get("log", False)).checked(param, allow_single=True)
        else:
            cls = {c.kind: c for c in (Uniform, LogUniform, OneMinusLogUniform)}.get(kind)
            if cls is None:
                raise ValueError(f"{param}: unknown distribution {kind!r} in a saved space")
            space[param] = cls(entry["low"], entry["high"]).checked(param)
    return space
