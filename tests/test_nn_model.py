"""Whole models: state_dict with PyTorch's keys, .npz files, fold_batchnorm.

- ``state_dict`` keys and order are PyTorch's; a torch model's state loads
  into the fastnn twin and back, and both then compute the same outputs;
- ``save``/``load`` round-trip through ``.npz``; files are read without
  pickles, and truncated, pickled, foreign files are clear ValueErrors;
- a missing or unexpected key, a wrong shape or dtype is a ValueError
  naming the key, and nothing is loaded;
- ``fold_batchnorm``: the folded model's outputs equal the unfolded one's in
  evaluation, with one kernel call fewer per Linear -> BatchNorm pair.
"""

import pickle

import numpy as np
import pytest

import fastnn
from fastnn import nn

from .support import assert_close, tolerance


def make_model(dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    return nn.Sequential(nn.Linear(6, 8, bias=False, dtype=dtype, seed=rng),
                         nn.BatchNorm(8, dtype=dtype), nn.ReLU(),
                         nn.Linear(8, 8, dtype=dtype, seed=rng), nn.BatchNorm(8, dtype=dtype),
                         nn.ReLU(), nn.Linear(8, 3, dtype=dtype, seed=rng))


def trained(model, steps=3, seed=1):
    """The model after a few forward passes (running statistics moved) and
    random parameter changes (BatchNorm's weight and bias not 1 and 0)."""
    rng = np.random.default_rng(seed)
    dtype = model.parameters()[0].dtype
    for p in model.parameters():
        p.data += (0.3 * rng.standard_normal(p.shape)).astype(dtype)
    for _ in range(steps):
        model(rng.standard_normal((16, 6)).astype(dtype) * 2 + 1)
    return model


TORCH_KEYS = ["0.weight", "1.weight", "1.bias", "1.running_mean", "1.running_var",
              "1.num_batches_tracked", "3.weight", "3.bias", "4.weight", "4.bias",
              "4.running_mean", "4.running_var", "4.num_batches_tracked", "6.weight",
              "6.bias"]


def test_state_dict_has_pytorchs_keys_and_types():
    state = trained(make_model()).state_dict()
    assert list(state) == TORCH_KEYS
    assert state["1.num_batches_tracked"].dtype == np.int64
    assert state["1.num_batches_tracked"].shape == () and int(state["1.num_batches_tracked"]) == 3
    assert state["0.weight"].shape == (8, 6) and state["0.weight"].dtype == np.float32


def test_state_dict_is_a_copy():
    model = make_model()
    state = model.state_dict()
    model.parameters()[0].data += 1
    assert not np.array_equal(state["0.weight"], model.parameters()[0].data)


def _torch_model(torch):
    return torch.nn.Sequential(torch.nn.Linear(6, 8, bias=False), torch.nn.BatchNorm1d(8),
                               torch.nn.ReLU(), torch.nn.Linear(8, 8), torch.nn.BatchNorm1d(8),
                               torch.nn.ReLU(), torch.nn.Linear(8, 3))


def test_state_dict_round_trip_with_torch(backend):
    torch = pytest.importorskip("torch")
    source = _torch_model(torch)
    with torch.no_grad():
        for _ in range(3):
            source(torch.randn(16, 6) * 2 + 1)         # running statistics move
    assert list(source.state_dict()) == TORCH_KEYS
    model = make_model(seed=5)
    model.load_state_dict({k: v.numpy() for k, v in source.state_dict().items()})
    back = _torch_model(torch)
    back.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    for key, value in source.state_dict().items():
        assert torch.equal(value, back.state_dict()[key]), key
    x = np.random.default_rng(2).standard_normal((10, 6)).astype(np.float32)
    source.eval()
    model.eval()
    with fastnn.use_backend(backend):
        got = model(x)
    with torch.no_grad():
        expected = source(torch.from_numpy(x)).numpy()
    assert_close(got, expected, type(tolerance(np.float32))(rtol=1e-5, atol=1e-5), "eval output")


def test_save_and_load_round_trip(tmp_path):
    model = trained(make_model())
    path = tmp_path / "weights.npz"
    model.save(path)
    assert path.exists() and not (tmp_path / "weights.npz.npz").exists()
    loaded = nn.load(path)
    assert list(loaded) == TORCH_KEYS
    other = make_model(seed=9)
    other.load_state_dict(loaded)
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(other.state_dict()[key], value, err_msg=key)
    again = make_model(seed=10)
    again.load_state_dict(np.load(path, allow_pickle=False))     # an NpzFile works too
    np.testing.assert_array_equal(again.state_dict()["6.bias"], model.state_dict()["6.bias"])
    name_without_suffix = tmp_path / "weights"
    model.save(name_without_suffix)
    assert name_without_suffix.exists()


def test_bad_files_are_clear_errors(tmp_path):
    model = make_model()
    good = tmp_path / "good.npz"
    model.save(good)
    data = good.read_bytes()
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(data[: len(data) // 2])
    text = tmp_path / "notes.npz"
    text.write_text("not an archive at all\n")
    pickled = tmp_path / "pickled.npz"
    pickled.write_bytes(pickle.dumps({"0.weight": np.ones(3)}))
    with_objects = tmp_path / "objects.npz"
    np.savez(with_objects, thing=np.array([{"a": 1}], dtype=object))
    single = tmp_path / "single.npy"
    np.save(single, np.ones(3))
    for path in (truncated, text, pickled, with_objects, single):
        with pytest.raises(ValueError, match=r"^path: expected an \.npz archive.*got"):
            nn.load(path)
    with pytest.raises(FileNotFoundError, match=r"^path"):
        nn.load(tmp_path / "missing.npz")


def _assert_unchanged(model, before):
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[key], err_msg=key)


@pytest.mark.parametrize("change, key", [
    (lambda s: s.pop("4.running_var"), "4.running_var"),
    (lambda s: s.update({"7.weight": np.ones(3, np.float32)}), "7.weight"),
    (lambda s: s.update({"3.bias": np.ones(9, np.float32)}), "3.bias"),
    (lambda s: s.update({"3.weight": np.ones((8, 8))}), "3.weight"),
    (lambda s: s.update({"1.num_batches_tracked": np.array(2.0)}), "1.num_batches_tracked"),
], ids=["missing", "unexpected", "shape", "dtype", "counter-dtype"])
def test_bad_state_loads_nothing(change, key):
    model = trained(make_model())
    before = model.state_dict()
    state = trained(make_model(seed=3)).state_dict()
    change(state)
    with pytest.raises(ValueError, match=rf"^{key}: expected.*got"):
        model.load_state_dict(state)
    _assert_unchanged(model, before)


def test_non_strict_load_reports_keys():
    model = make_model()
    state = trained(make_model(seed=3)).state_dict()
    del state["0.weight"]
    state["extra"] = np.zeros(1)
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert missing == ["0.weight"] and unexpected == ["extra"]
    np.testing.assert_array_equal(model.state_dict()["6.bias"], state["6.bias"])
    with pytest.raises(ValueError, match=r"^3.bias"):
        model.load_state_dict({"3.bias": np.zeros(2, np.float32)}, strict=False)


def test_load_state_dict_keeps_arrays_in_place():
    """Loading copies into the existing arrays (an optimizer's views stay valid)."""
    model = make_model()
    weight = model.parameters()[0].data
    model.load_state_dict(trained(make_model(seed=3)).state_dict())
    assert model.parameters()[0].data is weight


# ----------------------------------------------------------------- folding

@pytest.mark.parametrize("affine", [True, False])
def test_fold_batchnorm_matches_evaluation(backend, dtype, affine):
    rng = np.random.default_rng(31)
    model = nn.Sequential(nn.Linear(6, 8, bias=False, dtype=dtype, seed=rng),
                          nn.BatchNorm(8, affine=affine, dtype=dtype), nn.ReLU(),
                          nn.Linear(8, 8, dtype=dtype, seed=rng),
                          nn.BatchNorm(8, affine=affine, dtype=dtype), nn.ReLU(),
                          nn.Linear(8, 3, dtype=dtype, seed=rng))
    trained(model)
    folded = nn.fold_batchnorm(model)
    assert model.training, "the model itself is left as it was"
    assert not folded.training
    assert [type(layer).__name__ for layer in folded] == ["Linear", "ReLU", "Linear", "ReLU",
                                                         "Linear"]
    x = rng.standard_normal((20, 6)).astype(dtype)
    with fastnn.use_backend(backend):
        expected = model.eval()(x)
        got = folded(x)
    # Folding reassociates (x W^T) s into x (W s)^T: rounding of the dtype.
    tol = type(tolerance(dtype))(rtol=10 * tolerance(dtype).rtol,
                                 atol=10 * tolerance(dtype).atol)
    assert_close(got, expected, tol, "folded output")


def test_fold_batchnorm_makes_fewer_kernel_calls(monkeypatch):
    from fastnn import _registry
    calls = []
    original = _registry.kernel
    monkeypatch.setattr(_registry, "kernel",
                        lambda name, backend=None: (calls.append(name), original(name, backend))[1])
    model = trained(make_model()).eval()
    x = np.ones((4, 6), np.float32)
    calls.clear()
    model(x)
    unfolded = list(calls)
    calls.clear()
    nn.fold_batchnorm(model)(x)
    assert unfolded.count("batchnorm_forward") == 2 and "batchnorm_forward" not in calls
    assert len(calls) == len(unfolded) - 2 == 3


def test_fold_batchnorm_keeps_what_cannot_fold():
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm(4, track_running_stats=False),
                          nn.Sequential(nn.Linear(4, 4), nn.BatchNorm(4)), nn.ReLU())
    folded = nn.fold_batchnorm(model)
    assert [type(layer).__name__ for layer in folded] == ["Linear", "BatchNorm", "Sequential",
                                                         "ReLU"]
    assert [type(layer).__name__ for layer in folded[2]] == ["Linear"]
    with pytest.raises(TypeError, match=r"^model"):
        nn.fold_batchnorm("model")
