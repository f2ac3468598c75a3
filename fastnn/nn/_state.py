"""Named arrays on disk and into modules: ``.npz`` files, never pickles.

Files are uncompressed ``.npz`` archives written with ``numpy.savez`` and
read with ``allow_pickle=False``: a file from elsewhere cannot run code,
and a truncated or foreign file is a ValueError that says so.  Writes go
to a temporary file in the same folder that then replaces the target, so
a crash mid-write leaves the previous file whole.
"""

import os
import pickle
import tempfile
import zipfile

import numpy as np


def write_arrays(path, arrays):
    """Write ``{name: array}`` to ``path`` (exactly that name, no suffix added)."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    descriptor, temporary = tempfile.mkstemp(dir=folder, prefix=".fastnn-", suffix=".npz")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            np.savez(handle, **{name: np.asarray(a) for name, a in arrays.items()})
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def read_arrays(path):
    """``{name: array}`` from an ``.npz`` file written by ``write_arrays``."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"path: expected an existing .npz file, got {path!r}")
    try:
        # Our own handle, closed whatever happens: np.load given a path
        # leaves it open when the archive turns out to be truncated.
        with open(path, "rb") as handle:
            archive = np.load(handle, allow_pickle=False)
            if not isinstance(archive, np.lib.npyio.NpzFile):
                raise ValueError("it holds a single array, not an archive of named arrays")
            with archive:
                return {name: archive[name] for name in archive.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError,
            KeyError) as exc:
        raise ValueError(f"path: expected an .npz archive of plain arrays (as fastnn "
                         f"writes), got {path!r}, which cannot be read as one: "
                         f"{type(exc).__name__}: {exc}") from None


def load_into(targets, state, strict):
    """Check every entry of ``state`` against ``targets`` (``[(key, array)]``),
    then copy them in place.  Nothing is written unless everything fits."""
    if not hasattr(state, "keys") or not hasattr(state, "__getitem__"):
        raise TypeError(f"state: expected a mapping of key to array, got "
                        f"{type(state).__name__}")
    if not isinstance(strict, (bool, np.bool_)):
        raise TypeError(f"strict: expected True or False, got {strict!r}")
    expected = dict(targets)
    given = list(state.keys())
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in given if key not in expected]
    if strict and missing:
        raise ValueError(f"{missing[0]}: expected this key in the state (missing: "
                         f"{', '.join(missing)}), got a state without it")
    if strict and unexpected:
        raise ValueError(f"{unexpected[0]}: expected only this model's keys, got an "
                         f"unexpected key (unexpected: {', '.join(unexpected)})")
    values = {}
    for key, target in expected.items():
        if key not in state:
            continue
        value = np.asarray(state[key])
        if value.shape != target.shape:
            raise ValueError(f"{key}: expected shape {target.shape}, got {value.shape}")
        if value.dtype != target.dtype:
            raise ValueError(f"{key}: expected dtype {target.dtype}, got {value.dtype}")
        values[key] = value
    for key, value in values.items():
        np.copyto(expected[key], value)
    return missing, unexpected
