"""Tests of the benchmark tool itself (``fastnn.bench``), so the report cannot rot.

They run in the README's test command with the rest of ``benches/`` and
take several seconds: option parsing, tiny end-to-end runs of the report
(in process with a fake clock, and through ``python -m fastnn bench``), the
correctness gate that keeps wrong or failing contenders out of the timings
(PyTorch's included, whose outputs come from its worker process), the
worker's environment, timing and memory measurement driven by an injected
clock, the targets data and its checks, per-kernel availability, the plot
and the pytest-benchmark speedup script.  Nothing here compares two
measured times: every timing assertion runs on a fake clock.
"""

import importlib.util
import json
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

from fastnn.bench import (
    cases, cli, contenders, environment, report, runner, speedups, targets, timing,
)
from fastnn.bench.contenders import Contender

TINY_RUN = ["--sizes", "tiny", "--threads", "1", "--no-startup", "--no-roofline",
            "--time-per-case", "0.01", "--quiet"]
HAS_TORCH = importlib.util.find_spec("torch") is not None
needs_torch = pytest.mark.skipif(not HAS_TORCH, reason="PyTorch is not installed")


class SteppingClock:
    """A fake clock: each reading is ``step`` seconds after the previous one."""

    def __init__(self, step):
        self.step, self.now = step, 0.0

    def __call__(self):
        self.now += self.step
        return self.now


class ManualClock:
    """A fake clock that only the fake kernels move."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def kernel(self, seconds, log=None, name=None):
        def call():
            self.now += seconds
            if log is not None:
                log.append(name)
        return call


# ----------------------------------------------------------------------------
# Options

def test_select_kernels_by_name_family_and_pattern():
    assert cli.select_kernels("cross_entropy") == ["cross_entropy"]
    assert cli.select_kernels("batchnorm") == ["batchnorm_forward_train",
                                              "batchnorm_forward_eval", "batchnorm_backward"]
    assert set(cli.select_kernels("cross_entropy*")) == {
        name for name, kernel in cases.KERNELS.items() if kernel.family == "cross_entropy"}
    assert cli.select_kernels(None) == list(cases.KERNELS)
    with pytest.raises(cli.UsageError, match="no kernel matches 'conv'"):
        cli.select_kernels("conv")


def test_select_sizes():
    quick = cli.select_sizes(["batchnorm_forward_train"], None, full=False)
    kernel = cases.KERNELS["batchnorm_forward_train"]
    assert quick == {kernel.name: list(kernel.quick)}
    full = cli.select_sizes(["linear_forward"], None, full=True)
    assert full["linear_forward"] == [s.name for s in cases.KERNELS["linear_forward"].sizes]
    by_tier = cli.select_sizes(["batchnorm_backward", "linear_forward"], "medium", full=False)
    assert by_tier == {"batchnorm_backward": ["medium", "medium-nchw"],
                       "linear_forward": ["medium"]}
    by_label = cli.select_sizes(["cross_entropy", "linear_forward"], "2048x32000", full=False)
    assert by_label == {"cross_entropy": ["large"]}
    both = cli.select_sizes(["batchnorm_backward"], "medium,medium-nchw", full=False)
    assert both == {"batchnorm_backward": ["medium", "medium-nchw"]}
    with pytest.raises(cli.UsageError, match="'huge'"):
        cli.select_sizes(["cross_entropy"], "huge", full=False)


def test_select_dtypes_and_threads():
    assert cli.select_dtypes("both") == ["float32", "float64"]
    assert cli.select_dtypes("float64") == ["float64"]
    with pytest.raises(cli.UsageError, match="--dtype"):
        cli.select_dtypes("float16")
    assert cli.select_threads("1") == [1]
    with pytest.raises(cli.UsageError, match="--threads"):
        cli.select_threads("0")
    with pytest.raises(cli.UsageError, match="--threads"):
        cli.select_threads("two")


def test_usage_errors_exit_with_status_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--kernels", "conv"])
    assert exit_info.value.code == 2
    assert "no kernel matches" in capsys.readouterr().err


def test_bad_targets_file_is_a_usage_error(tmp_path, capsys):
    path = tmp_path / "t.toml"
    path.write_text('[[target]]\nbackends = ["numba"]\nkernels = ["conv"]\nsizes = ["tiny"]\n'
                    'vs_numpy = 1\n')
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--targets", str(path)] + TINY_RUN)
    assert exit_info.value.code == 2
    assert "--targets: t.toml, target 1: kernels: 'conv' matches no kernel" in \
        capsys.readouterr().err


def test_plot_without_matplotlib_is_a_clear_error(monkeypatch, capsys, tmp_path):
    from fastnn.bench import plot
    monkeypatch.setattr(plot, "matplotlib_missing", lambda: "No module named 'matplotlib'")
    assert cli.main(["--plot", str(tmp_path / "x.png")] + TINY_RUN) == 2
    assert "pip install 'fastnn[plot]'" in capsys.readouterr().err


def test_list(capsys):
    assert cli.main(["--list", "--kernels", "linear"]) == 0
    out = capsys.readouterr().out
    assert "linear_relu_backward" in out and "256x1024->1024" in out and "contenders:" in out
    assert "targets: " in out and "targets.toml" in out


# ----------------------------------------------------------------------------
# Kernel entries

@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kernel_name", list(cases.KERNELS))
def test_baseline_in_working_dtype_matches_float64_reference(kernel_name, dtype):
    kernel = cases.KERNELS[kernel_name]
    size = kernel.sizes[0]
    inputs = cases.case_inputs(kernel, size, dtype)
    reference = cases.reference_outputs(kernel, inputs)
    own = {k: (v.copy() if k in kernel.mutable else v) for k, v in inputs.items()}
    outputs = kernel.outputs(kernel.numpy_call(own)(), own)
    error, where = cases.compare(outputs, reference, dtype)
    assert cases.within_tolerance(error, dtype), (where, error)
    for name, value in outputs.items():
        assert np.asarray(value).dtype == np.dtype(dtype), name


def test_entries_are_complete():
    from fastnn._backends import KERNELS as CONTRACT
    for kernel in cases.KERNELS.values():
        assert kernel.apis and set(kernel.apis) <= set(CONTRACT), kernel.name
        assert kernel.family in cases.FAMILIES
        assert (kernel.bytes_formula is None) != (kernel.flops_formula is None), kernel.name
        assert kernel.check_size is not None, kernel.name
        for variant in kernel.variants:
            assert variant in contenders.VARIANTS, (kernel.name, variant)
            if variant == "out":
                inputs = cases.case_inputs(kernel, kernel.sizes[0], "float32")
                assert "out" in inputs and "out" in kernel.mutable, kernel.name
            if variant == "kernels":
                assert kernel.kernels_only is not None, kernel.name
        for variant in kernel.torch_variants:
            assert variant in contenders.TORCH_VARIANTS, (kernel.name, variant)


def test_every_family_has_a_bench_file():
    benches = pathlib.Path(__file__).parent
    for family in cases.FAMILIES:
        path = benches / f"bench_{family}.py"
        assert path.exists(), f"{family}: add {path.name} (FAMILY = {family!r})"
        assert f'FAMILY = "{family}"' in path.read_text(), path.name


def test_check_sizes_reach_the_numba_paths_they_are_for():
    # The --benchmark-disable pass runs each kernel at its check size in
    # float64; these are the numba backend's thresholds those sizes must pass.
    from fastnn._backends.numba import _batchnorm_tiles, _jit
    from conftest import CHECK_STREAM_BYTES
    for kernel in cases.KERNELS.values():
        size = kernel.check_size
        elements = int(np.prod(size.shape))
        if kernel.family in ("batchnorm", "cross_entropy"):
            assert elements >= _jit.PARALLEL_MIN_ELEMENTS, kernel.name
        if kernel.family == "batchnorm":
            assert elements > 2 * _batchnorm_tiles.TILE_ELEMENTS, kernel.name   # several tiles
            assert elements * 8 >= CHECK_STREAM_BYTES, kernel.name   # float64 out= streams
            assert "out" in kernel.variants


# ----------------------------------------------------------------------------
# Timing, on fake clocks

def test_time_interleaved_measures_with_the_injected_clock_and_rotates():
    clock, log, sleeps = ManualClock(), [], []
    calls = {"a": clock.kernel(1e-6, log, "a"), "b": clock.kernel(1e-5, log, "b"),
             "slow": clock.kernel(2e-3, log, "slow")}
    result = timing.time_interleaved(calls, budget_s=0.05, min_rounds=4, clock=clock,
                                     sleep=sleeps.append)
    assert result["a"].median == pytest.approx(1e-6)
    assert result["b"].median == pytest.approx(1e-5)
    assert result["slow"].min == result["slow"].max == pytest.approx(2e-3)
    assert result["a"].inner == 2000 and result["b"].inner == 200 and result["slow"].inner == 1
    rounds = result["a"].rounds
    assert rounds == result["b"].rounds == result["slow"].rounds >= 4
    # The pause follows every sample of the millisecond call, and only those.
    assert sleeps == [0.01] * rounds
    # Round r starts with contender r mod 3: drift hits every contender alike.
    # Every sample starts with one untimed call (the fastest call is far
    # below 5 ms: the case is timed warm).
    per_round = 2001 + 201 + 2
    timed = log[-per_round * rounds:]
    starts = [timed[r * per_round] for r in range(rounds)]
    assert starts[:3] == ["a", "b", "slow"]
    assert timed[:2001] == ["a"] * 2001


def test_slow_cases_are_not_primed():
    clock, log = ManualClock(), []
    calls = {"a": clock.kernel(6e-3, log, "a"), "b": clock.kernel(8e-3, log, "b")}
    result = timing.time_interleaved(calls, budget_s=0.05, min_rounds=3, clock=clock,
                                     sleep=lambda s: None)
    assert result["a"].rounds == 3 and result["a"].median == pytest.approx(6e-3)
    # Warm-up until 20 ms (4 and 3 calls), then one call per sample, no priming.
    assert log == ["a"] * 4 + ["b"] * 3 + ["a", "b", "b", "a", "a", "b"]


def test_time_interleaved_honours_a_timers_own_pause():
    clock, sleeps = ManualClock(), []

    class Remote:
        settle_s = 0.015

        def warm(self, seconds):
            return 1e-6

        def sample(self, repeat, prime=False):
            assert prime            # a microsecond call is timed warm
            clock.now += 1e-6 * repeat
            return 1e-6

    result = timing.time_interleaved({"local": clock.kernel(1e-6), "remote": Remote()},
                                     budget_s=0.01, min_rounds=3, clock=clock,
                                     sleep=sleeps.append)
    assert result["remote"].median == 1e-6
    assert sleeps == [0.015] * result["remote"].rounds


def test_peak_extra_bytes_counts_temporaries_not_outputs():
    def kernel():
        temporary = np.ones(1_000_000)          # 8 MB, freed before returning
        return np.zeros(10) + temporary[:10]

    extra, seconds = timing.peak_extra_bytes(kernel, clock=SteppingClock(0.5))
    assert 8_000_000 <= extra < 8_100_000 and seconds == 0.5
    assert timing.peak_extra_bytes(lambda: np.ones(1_000_000))[0] < 1000


# ----------------------------------------------------------------------------
# End to end

def _tiny_config(kernels, clock, **extra):
    return runner.Config(
        kernels=kernels, sizes={name: ["tiny"] for name in kernels}, threads=[1],
        budget_s=0.01, min_rounds=3, startup=False, roofline=False, clock=clock,
        targets=targets.load(), **extra)


def test_tiny_run_in_process_on_a_fake_clock():
    step = 2.0 ** -16           # readings stay exact binary fractions
    kernels = ["batchnorm_forward_train", "linear_backward"]
    result = runner.run(_tiny_config(kernels, SteppingClock(step)))
    assert result["failures"] == []
    assert {row["kernel"] for row in result["rows"]} == set(kernels)
    for row in result["rows"]:
        assert row["status"] == "ok"
        if row["kind"] == "torch":          # timed by its worker, on the real clock
            assert row["rounds"] >= 3
            continue
        # A call's two clock readings are one step apart, so calibration asks
        # for ceil(2 ms / step) = 132 calls per sample, and a sample's two
        # readings give step / 132 per call.
        assert row["inner"] == 132
        assert row["median_s"] == row["min_s"] == row["max_s"] == step / 132
        if row["kind"] in ("baseline", "fastnn"):
            assert row["extra_bytes"] >= 0
    out_rows = [r for r in result["rows"] if r["variant"] == "out"]
    assert {r["kernel"] for r in out_rows} == {"batchnorm_forward_train"}
    assert {r["kernel"] for r in result["rows"] if r["kind"] == "bound"} == {"linear_backward"}
    assert all(r["vs_numpy"] == 1.0 for r in result["rows"] if r["contender"] == "numpy")
    assert result["targets"] and result["targets_file"] == targets.DEFAULT_PATH
    text = report.render(result)
    assert "batchnorm_forward_train, float32" in text and "how each contender ran:" in text
    assert "this process (pid" in text


def test_tiny_report_json(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv(environment.CHILD_MARK, "1")       # no re-run in a child process
    path = tmp_path / "run.json"
    code = cli.main(["--kernels", "batchnorm_forward_eval", "--no-torch", "--json", str(path)]
                    + TINY_RUN)
    out = capsys.readouterr().out
    assert code == 0, out
    result = json.loads(path.read_text())
    assert result["failures"] == [] and result["machine"]["versions"]["numpy"] == np.__version__
    assert "targets (" in out and "criteria met" in out


def test_tiny_report_through_the_command_line():
    env = dict(os.environ)
    env.pop(environment.CHILD_MARK, None)
    env.pop("OPENBLAS_THREAD_TIMEOUT", None)
    completed = subprocess.run(
        [sys.executable, "-m", "fastnn", "bench", "--kernels", "linear_forward"] + TINY_RUN,
        capture_output=True, text=True, env=env, timeout=300)
    assert completed.returncode == 0, completed.stderr
    out = completed.stdout
    assert "linear_forward, float32" in out
    assert "OPENBLAS_THREAD_TIMEOUT=4 (set by the bench" in out     # the child run has it
    if HAS_TORCH:
        (torch_line,) = [line for line in out.splitlines() if line.startswith("  torch: ")]
        assert "its own process" in torch_line and "OPENBLAS_THREAD_TIMEOUT" not in torch_line
        if "OMP_WAIT_POLICY" not in os.environ:
            assert "OMP_WAIT_POLICY unset" in torch_line


def test_without_torch_the_run_skips_it(monkeypatch):
    monkeypatch.setattr(contenders, "torch_available", lambda: False)
    result = runner.run(_tiny_config(["cross_entropy"], SteppingClock(1e-5)))
    assert result["skipped"]["torch"] == "not installed"
    assert "torch" not in {row["contender"] for row in result["rows"]}
    assert all(row["vs_torch"] is None for row in result["rows"] if "vs_torch" in row)
    text = report.render(result)
    assert "not run: torch: not installed" in text


# ----------------------------------------------------------------------------
# The correctness gate

class _Broken(Contender):
    """A contender whose output is wrong (``backend="wrong"``) or that raises."""

    def prepare(self, kernel, inputs):
        good, outputs = Contender("numpy", "baseline").prepare(kernel, inputs)
        if self.backend == "raise":
            def call():
                raise RuntimeError("kernel exploded")
            return call, outputs

        def wrong():
            result = good()
            return (result[0] * 1.01,) + tuple(result[1:])
        return wrong, outputs


def _tiny_case(kernel_name):
    kernel = cases.KERNELS[kernel_name]
    size = kernel.size("tiny")
    inputs = cases.case_inputs(kernel, size, "float32")
    return kernel, size, inputs, cases.reference_outputs(kernel, inputs)


def test_wrong_or_failing_contenders_are_reported_and_not_timed():
    kernel, size, inputs, reference = _tiny_case("batchnorm_forward_train")
    config = runner.Config(kernels=[kernel.name], sizes={kernel.name: ["tiny"]}, budget_s=0.01,
                           clock=SteppingClock(1e-5))
    contenders_ = [Contender("numpy", "baseline"), _Broken("bad", "fastnn", "wrong"),
                   _Broken("boom", "fastnn", "raise")]
    rows = {r["contender"]: r for r in runner._run_case(
        kernel, size, "float32", 1, contenders_, inputs, reference, config, measure_memory=True)}
    assert rows["numpy"]["status"] == "ok" and rows["numpy"]["median_s"] > 0
    assert rows["bad"]["status"].startswith("wrong: y off by")
    assert rows["boom"]["status"] == "error: RuntimeError: kernel exploded"
    assert "median_s" not in rows["bad"] and "median_s" not in rows["boom"]


def test_reference_check_catches_nan_and_shape():
    reference = {"y": np.ones(4)}
    assert cases.compare({"y": np.ones(4, np.float32)}, reference, np.float32) == (0.0, "y")
    assert cases.compare({"y": np.full(4, np.nan)}, reference, np.float32)[0] == float("inf")
    assert cases.compare({"y": np.ones(5)}, reference, np.float32)[0] == float("inf")


# ----------------------------------------------------------------------------
# PyTorch's worker process

@pytest.fixture(scope="module")
def torch_worker():
    from fastnn.bench.worker import TorchWorker
    import fastnn
    fastnn.backends()               # this process has fastnn's backends and their policy
    with TorchWorker() as worker:
        yield worker


@needs_torch
def test_worker_outputs_are_checked_here_and_a_wrong_one_is_caught(torch_worker):
    kernel, size, inputs, reference = _tiny_case("cross_entropy_with_grad")
    config = runner.Config(kernels=[kernel.name], sizes={kernel.name: ["tiny"]}, budget_s=0.01,
                           clock=SteppingClock(1e-5))
    torch_only = [Contender("torch", "torch")]
    peer = runner._TorchPeer(torch_worker)
    peer.start(kernel, size, "float32", 1)
    (row,) = runner._run_case(kernel, size, "float32", 1, torch_only, inputs, reference,
                              config, measure_memory=False, torch_peer=peer)
    assert row["status"] == "ok" and row["max_rel_error"] < 1e-6 and row["rounds"] >= 3
    wrong = dict(reference, dlogits=reference["dlogits"] * 1.01)
    (row,) = runner._run_case(kernel, size, "float32", 1, torch_only, inputs, wrong,
                              config, measure_memory=False, torch_peer=peer)
    assert row["status"].startswith("wrong: dlogits off by")
    assert "median_s" not in row


@needs_torch
def test_worker_runs_in_the_users_environment_without_fastnn_backends(torch_worker):
    info = torch_worker.info
    assert info["pid"] != os.getpid()
    assert info["fastnn_backends_imported"] == []
    assert info["env"].get("OMP_WAIT_POLICY") == \
        environment.user_environment().get("OMP_WAIT_POLICY")
    assert "OPENBLAS_THREAD_TIMEOUT" not in info["env"] or \
        "OPENBLAS_THREAD_TIMEOUT" in environment.user_environment()


@needs_torch
def test_a_dead_worker_is_an_error_row_and_is_restarted():
    from fastnn.bench.worker import TorchWorker, WorkerError
    kernel, size, inputs, reference = _tiny_case("linear_forward")
    peer = runner._TorchPeer(TorchWorker())
    try:
        first_pid = peer.worker.process.pid
        peer.worker.process.kill()
        peer.worker.process.wait()
        with pytest.raises(WorkerError):
            peer.worker.request("hello")
        timer, outputs = peer.finish(kernel, size, "float32", 1)     # starts a new worker
        assert peer.worker.process.pid != first_pid
        assert cases.compare(outputs, reference, "float32")[0] < 1e-6
        with pytest.raises(WorkerError, match="KeyError"):         # the worker lives on
            peer.worker.request("prepare", case=99, kernel="no_such_kernel", size=size,
                                dtype="float32", threads=1)
        assert peer.worker.request("sample", case=timer.case, repeat=2) > 0
    finally:
        peer.close()


def test_user_environment_drops_what_fastnn_and_the_bench_added(monkeypatch):
    monkeypatch.setattr(environment, "_snapshot", {
        "PATH": "/bin", "OPENBLAS_THREAD_TIMEOUT": "4", "OMP_WAIT_POLICY": "PASSIVE",
        environment.ADDED_MARK: "OPENBLAS_THREAD_TIMEOUT", environment.CHILD_MARK: "1"})
    monkeypatch.setattr(environment, "_policy_before_snapshot", True)
    assert environment.user_environment() == {"PATH": "/bin"}
    monkeypatch.setattr(environment, "_policy_before_snapshot", False)     # PASSIVE is the user's
    assert environment.user_environment() == {"PATH": "/bin", "OMP_WAIT_POLICY": "PASSIVE"}


# ----------------------------------------------------------------------------
# Per-kernel availability

def test_a_backend_lacking_a_kernel_gets_no_rows_for_it(monkeypatch):
    real = contenders.kernel_availability()

    def lacking_softmax_cross_entropy():
        status = {kernel: dict(states) for kernel, states in real.items()}
        status["softmax_cross_entropy"]["numba"] = "unavailable: not written yet"
        return status
    monkeypatch.setattr(contenders, "kernel_availability", lacking_softmax_cross_entropy)
    monkeypatch.setattr(contenders, "torch_available", lambda: False)
    kernels = ["cross_entropy", "cross_entropy_with_grad"]
    result = runner.run(_tiny_config(kernels, SteppingClock(1e-5), backends=["numba"]))
    assert result["lacking"] == {
        "fastnn[numba]": {"softmax_cross_entropy": "unavailable: not written yet"}}
    by_kernel = {}
    for row in result["rows"]:
        by_kernel.setdefault(row["kernel"], set()).add(row["contender"])
    assert by_kernel["cross_entropy"] == {"numpy"}
    assert {"fastnn[numba]", "fastnn[numba]+out"} <= by_kernel["cross_entropy_with_grad"]
    assert "fastnn[numba] lacks kernels (no rows for them): softmax_cross_entropy " \
           "(unavailable: not written yet)" in report.render(result)


def test_kernel_availability_without_kernel_status(monkeypatch):
    import fastnn
    monkeypatch.delattr(fastnn, "kernel_status", raising=False)
    monkeypatch.setattr(fastnn, "backends", lambda: {
        "numpy": "available", "c": "unavailable: not built",
        "x": "partial: lacks linear_forward, linear_backward"})
    status = contenders.kernel_availability()
    assert status["batchnorm_forward"] == {"numpy": "available", "c": "unavailable: not built",
                                           "x": "available"}
    assert status["linear_forward"]["x"].startswith("unavailable")


# ----------------------------------------------------------------------------
# Targets

def _row(contender, median, size="large", label="2048x32000", kernel="cross_entropy",
         **extra):
    kind = "torch" if contender.startswith("torch") else \
        {"numpy": "baseline"}.get(contender, "fastnn")
    backend = contender[len("fastnn["):].split("]")[0] if kind == "fastnn" else None
    variant = contender.split("+", 1)[1] if "+" in contender else None
    row = dict(kernel=kernel, size=size, label=label, dtype="float32", threads=2,
               contender=contender, kind=kind, backend=backend, variant=variant, status="ok",
               median_s=median)
    row.update(extra)
    return row


def _targets_file(tmp_path, text, name="t.toml"):
    path = tmp_path / name
    path.write_text(text)
    return targets.load(str(path))


def test_shipped_targets_load_and_cover_every_kernel():
    shipped = targets.load()
    assert shipped.path == targets.DEFAULT_PATH and set(shipped.backends) == {"numba", "c"}
    for kernel in cases.KERNELS.values():
        rows = [_row("fastnn[numba]", 1.0, size=size.name, label=size.label, kernel=kernel.name)
                for size in kernel.sizes]
        assert any(t.selects(row, row["label"]) for t in shipped.entries for row in rows), \
            kernel.name


def test_targets_verdicts():
    rows = [_row("numpy", 1.0), _row("torch", 0.5),
            _row("fastnn[numba]", 0.2, vs_numpy=5.0, vs_torch=2.5, of_roof=0.65),
            _row("fastnn[numpy]", 1.0, vs_numpy=1.0, vs_torch=0.5),
            _row("fastnn[numpy]+out", 1.0, vs_numpy=1.0, vs_torch=0.5)]
    (verdict,) = targets.check(rows, targets.load())   # the reference backend has no targets
    assert verdict["contender"] == "fastnn[numba]" and not verdict["contended"]
    criteria = verdict["criteria"]
    assert criteria["vs_numpy"] == {"wanted": 4.0, "got": 5.0, "met": True, "sense": "min"}
    assert criteria["vs_torch"]["met"] is True
    assert criteria["of_triad"]["met"] is True      # 0.65 >= 0.60 for the loss at 2048x32000


def test_training_step_targets_take_the_faster_torch_and_the_kernels_only_floor():
    kernel, size, label = "train_step", "medium", "1024x784-1024-1024-10"
    rows = [_row("numpy", 0.100, size, label, kernel), _row("torch", 0.060, size, label, kernel),
            _row("torch+fused", 0.050, size, label, kernel),
            _row("fastnn[numba]", 0.040, size, label, kernel),
            _row("fastnn[numba]+kernels", 0.038, size, label, kernel)]
    for row in rows:
        row.update(min_bytes=None, flops=None)
    runner._derive(rows, {})
    by_name = {r["contender"]: r for r in rows}
    assert by_name["fastnn[numba]"]["vs_torch"] == pytest.approx(0.050 / 0.040)
    (verdict,) = targets.check(rows, targets.load())     # the +kernels row is not judged
    criteria = verdict["criteria"]
    assert verdict["contender"] == "fastnn[numba]"
    assert criteria["vs_torch"]["wanted"] == 1.2 and criteria["vs_torch"]["met"] is True
    assert criteria["max_over_kernels_only"]["got"] == pytest.approx(0.040 / 0.038 - 1)
    assert criteria["max_over_kernels_only"]["met"] is True
    slow = [dict(r, median_s=0.050) if r["contender"] == "fastnn[numba]" else r for r in rows]
    (verdict,) = targets.check(slow, targets.load())
    assert verdict["criteria"]["max_over_kernels_only"]["met"] is False   # +32% > 10%


def test_training_step_contenders():
    kernel = cases.KERNELS["train_step"]
    names = {c.name for c in contenders.make_contenders()[0] if c.applies_to(kernel)}
    assert {"numpy", "fastnn[numpy]", "fastnn[numba]", "fastnn[numba]+kernels"} <= names
    assert "fastnn[numba]+out" not in names and "gemm-only" not in names
    if HAS_TORCH:
        assert {"torch", "torch+fused"} <= names
    for other in cases.KERNELS.values():
        if other.name != "train_step":
            assert not Contender("torch+fused", "torch", variant="fused").applies_to(other)


def test_c_targets_select_by_variant_dtype_and_compare_backends():
    shipped = targets.load()
    kernel, size, label = "batchnorm_forward_train", "large", "65536x256"
    rows = [_row("fastnn[numba]", 0.010, size, label, kernel),
            _row("fastnn[numba]+out", 0.008, size, label, kernel),
            _row("fastnn[c]", 0.0105, size, label, kernel, of_roof=0.5),
            _row("fastnn[c]+out", 0.0100, size, label, kernel, of_roof=0.72)]
    verdicts = {v["contender"]: v["criteria"] for v in targets.check(rows, shipped)}
    assert verdicts["fastnn[c]"]["vs_fastnn[numba]"]["met"] is True       # 0.95 >= 0.909
    assert verdicts["fastnn[c]+out"]["vs_fastnn[numba]"]["got"] == pytest.approx(0.8)
    assert verdicts["fastnn[c]+out"]["vs_fastnn[numba]"]["met"] is False
    assert verdicts["fastnn[c]+out"]["of_triad"]["met"] is True           # the out= target
    assert verdicts["fastnn[c]"]["of_triad"]["met"] is False              # every fast backend
    float64 = [dict(r, dtype="float64") for r in rows]
    verdicts = {v["contender"]: v["criteria"] for v in targets.check(float64, shipped)}
    assert "vs_fastnn[numba]" not in verdicts["fastnn[c]"]                # float32 only


def test_targets_from_another_file(tmp_path):
    custom = _targets_file(tmp_path, """
[[target]]
backends = ["numba"]
kernels = ["cross_entropy"]
sizes = ["2048x32000"]
variants = ["plain"]
vs_numpy = 6.0
vs_torch = 2.0
[[target]]
backends = ["numba"]
kernels = ["cross*"]
sizes = ["large"]
vs_torch = 3.0
""")
    rows = [_row("fastnn[numba]", 0.2, vs_numpy=5.0, vs_torch=2.5),
            _row("fastnn[numba]+out", 0.2, vs_numpy=5.0, vs_torch=2.5, other_cpus=1.0)]
    verdicts = {v["contender"]: v for v in targets.check(rows, custom)}
    plain = verdicts["fastnn[numba]"]["criteria"]
    assert plain["vs_numpy"]["met"] is False and plain["vs_torch"]["met"] is True
    assert plain["vs_torch (t.toml, target 2)"]["met"] is False          # both are shown
    assert list(verdicts["fastnn[numba]+out"]["criteria"]) == ["vs_torch"]
    assert verdicts["fastnn[numba]+out"]["contended"] is True
    json_path = tmp_path / "t.json"
    json_path.write_text(json.dumps({"target": [{"backends": ["numba"], "kernels": ["*"],
                                                 "sizes": ["tiny"], "vs_numpy": 2}]}))
    assert targets.load(str(json_path)).entries[0].criteria == {"vs_numpy": 2.0}


@pytest.mark.parametrize("body, message", [
    ('backends = ["numpy"]\nkernels = ["*"]\nsizes = ["*"]\nvs_numpy = 1',
     "'numpy' is the reference backend"),
    ('backends = ["numba"]\nkernels = ["cross_entropy"]\nsizes = ["4096x1024"]\nvs_numpy = 1',
     "sizes: '4096x1024' is no size of cross_entropy"),
    ('backends = ["numba"]\nkernels = ["*"]\nsizes = ["*"]\nspeed = 1',
     "unknown keys ['speed']"),
    ('backends = ["numba"]\nkernels = ["*"]\nsizes = ["*"]', "states no criterion"),
    ('backends = ["numba"]\nkernels = ["*"]\nsizes = ["*"]\nvs_numpy = -1',
     "vs_numpy: expected a positive number"),
    ('backends = "numba"\nkernels = ["*"]\nsizes = ["*"]\nvs_numpy = 1',
     "backends: expected a non-empty list"),
    ('kernels = ["*"]\nsizes = ["*"]\nvs_numpy = 1', "backends is missing"),
    ('backends = ["c"]\nkernels = ["*"]\nsizes = ["*"]\nvariants = ["fresh"]\nvs_numpy = 1',
     "variants: expected some of"),
])
def test_bad_targets_are_rejected_with_their_place(tmp_path, body, message):
    with pytest.raises(targets.TargetsError, match="t.toml, target 1: .*" + re.escape(message)):
        _targets_file(tmp_path, "[[target]]\n" + body + "\n")


def test_unreadable_targets(tmp_path):
    with pytest.raises(targets.TargetsError, match="cannot be read"):
        targets.load(str(tmp_path / "missing.toml"))
    with pytest.raises(targets.TargetsError, match="not valid TOML"):
        _targets_file(tmp_path, "[[target]\n")


# ----------------------------------------------------------------------------
# Report, plot, speedups

def _result(rows, **extra):
    result = {"config": {"mode": "quick", "threads": [2], "dtypes": ["float32"]},
              "machine": {"date": "2026-01-01", "cpu": "test", "cpus_usable": 2,
                          "memory_bytes": None, "caches": {}, "versions": {"numpy": "2"},
                          "blas": None, "environment": {}},
              "contenders": ["numpy", "fastnn[x]"], "skipped": {"torch": "not installed"},
              "rows": rows, "failures": [r for r in rows if r["status"] != "ok"],
              "targets": [], "elapsed_s": 1.0}
    result.update(extra)
    return result


def test_render_handles_failures_and_missing_figures():
    rows = [_row("numpy", 1e-3, min_s=1e-3, max_s=1e-3, min_bytes=10, flops=None,
                 vs_numpy=1.0, vs_torch=None),
            _row("fastnn[x]", None, status="wrong: y off by 1", min_bytes=10, flops=None)]
    text = report.render(_result(rows, targets_note="reading TOML needs tomli"))
    assert "WRONG: Y OFF BY 1" in text and "not run: torch: not installed" in text
    assert "1 contender run(s) FAILED" in text
    assert "targets: not checked: reading TOML needs tomli" in text


def test_render_marks_contended_cases_and_leaves_their_verdicts_out():
    rows = [_row("numpy", 1e-3, min_s=1e-3, max_s=1e-3, min_bytes=10, flops=None,
                 vs_numpy=1.0, other_cpus=1.1),
            _row("fastnn[numba]", 1e-4, min_s=1e-4, max_s=1e-4, min_bytes=10, flops=None,
                 vs_numpy=10.0, other_cpus=1.1)]
    verdicts = targets.check(rows, targets.load())
    text = report.render(_result(rows, targets=verdicts, targets_file="t.toml",
                                 targets_unchecked=["c"]))
    assert "! other processes kept 1.10 CPU(s) busy while this case was timed" in text
    assert "[timed under contention: not judged]" in text
    assert "0 criteria met, 0 missed" in text and "not judged" in text
    assert "targets of fastnn[c]: not checked, no fastnn[c] row ran" in text


def test_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    from fastnn.bench import plot
    rows = [_row("numpy", 1e-3, gbps=5.0, vs_numpy=1.0),
            _row("fastnn[numba]", 1e-4, gbps=50.0, vs_numpy=10.0)]
    result = {"config": {"threads": [2], "dtypes": ["float32"]}, "rows": rows,
              "contenders": ["numpy", "fastnn[numba]"], "roofline": {},
              "machine": {"date": "2026-01-01", "cpu": "test"}}
    path = tmp_path / "bench.png"
    plot.plot(result, str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_speedups_script(tmp_path, capsys):
    def bench(contender, median):
        return {"group": "cross_entropy 8x10 float32 2t", "name": contender,
                "fullname": f"bench::{contender}", "stats": {"median": median},
                "extra_info": {"contender": contender, "min_bytes": 1000, "flops": None}}
    path = tmp_path / "run.json"
    benchmarks = [bench("numpy", 4e-6), bench("fastnn[numba]", 1e-6)]
    path.write_text(json.dumps({"benchmarks": benchmarks}))
    assert speedups.main([str(path)]) == 0
    out = capsys.readouterr().out
    assert "fastnn[numba]" in out and "4.00" in out and "1.0 GB/s" in out
    assert speedups.main([str(path), str(path)]) == 0
    assert "1.00" in capsys.readouterr().out
