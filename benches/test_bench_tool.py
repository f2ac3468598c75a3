"""Tests of the benchmark tool itself (``fastnn.bench``), so the report cannot rot.

They run in the README's test command with the rest of ``benches/`` and
take a few seconds: option parsing, a tiny end-to-end run of the report (in
process and through ``python -m fastnn bench``), the correctness gate that
keeps wrong or failing contenders out of the timings, timing and memory
measurement, targets, the plot and the pytest-benchmark speedup script.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from fastnn.bench import cases, cli, report, runner, speedups, targets, timing
from fastnn.bench.contenders import Contender

TINY_RUN = ["--sizes", "tiny", "--threads", "1", "--no-startup", "--no-roofline",
            "--time-per-case", "0.01", "--quiet"]


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
    assert full["linear_forward"] == [s.name for s in cases.LINEAR_SIZES]
    by_tier = cli.select_sizes(["batchnorm_backward", "linear_forward"], "medium", full=False)
    assert by_tier == {"batchnorm_backward": ["medium", "medium-nchw"],
                       "linear_forward": ["medium"]}
    by_label = cli.select_sizes(["cross_entropy", "linear_forward"], "2048x32000", full=False)
    assert by_label == {"cross_entropy": ["large"]}
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


def test_plot_without_matplotlib_is_a_clear_error(monkeypatch, capsys, tmp_path):
    from fastnn.bench import plot
    monkeypatch.setattr(plot, "matplotlib_missing", lambda: "No module named 'matplotlib'")
    assert cli.main(["--plot", str(tmp_path / "x.png")] + TINY_RUN) == 2
    assert "pip install 'fastnn[plot]'" in capsys.readouterr().err


def test_list(capsys):
    assert cli.main(["--list", "--kernels", "linear"]) == 0
    out = capsys.readouterr().out
    assert "linear_relu_backward" in out and "256x1024->1024" in out and "contenders:" in out


# ----------------------------------------------------------------------------
# End to end

def test_tiny_report_in_process(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("FASTNN_BENCH_CHILD", "1")       # no re-run in a child process
    path = tmp_path / "run.json"
    kernels = "batchnorm_forward_train,cross_entropy_with_grad,linear_backward"
    code = cli.main(["--kernels", kernels, "--json", str(path)] + TINY_RUN)
    out = capsys.readouterr().out
    assert code == 0, out
    result = json.loads(path.read_text())
    assert result["failures"] == []
    kernels = {row["kernel"] for row in result["rows"]}
    assert kernels == {"batchnorm_forward_train", "cross_entropy_with_grad", "linear_backward"}
    for row in result["rows"]:
        assert row["status"] == "ok"
        assert 0 < row["min_s"] <= row["median_s"] <= row["max_s"]
        if row["kind"] in ("baseline", "fastnn"):
            assert row["extra_bytes"] >= 0
    out_rows = [r for r in result["rows"] if r["variant"] == "out"]
    # Every kernel here but Linear has an out= variant.
    assert {r["kernel"] for r in out_rows} == {"batchnorm_forward_train",
                                               "cross_entropy_with_grad"}
    baseline = [r for r in result["rows"] if r["contender"] == "numpy"]
    assert all(r["vs_numpy"] == 1.0 for r in baseline)
    assert "batchnorm_forward_train, float32" in out and "xNumPy" in out
    assert result["machine"]["versions"]["numpy"] == np.__version__


def test_tiny_report_through_the_command_line():
    env = dict(os.environ)
    env.pop("FASTNN_BENCH_CHILD", None)
    completed = subprocess.run(
        [sys.executable, "-m", "fastnn", "bench", "--kernels", "linear_forward", "--no-torch"]
        + TINY_RUN, capture_output=True, text=True, env=env, timeout=300)
    assert completed.returncode == 0, completed.stderr
    assert "linear_forward, float32" in completed.stdout
    assert "OPENBLAS_THREAD_TIMEOUT=" in completed.stdout     # the child run has it set


# ----------------------------------------------------------------------------
# The correctness gate

class _Broken(Contender):
    """A contender whose output is wrong (``mode="wrong"``) or that raises."""

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


def test_wrong_or_failing_contenders_are_reported_and_not_timed():
    kernel = cases.KERNELS["batchnorm_forward_train"]
    size = kernel.size("tiny")
    inputs = cases.case_inputs(kernel, size, "float32")
    reference = cases.reference_outputs(kernel, inputs)
    config = runner.Config(kernels=[kernel.name], sizes={kernel.name: ["tiny"]}, budget_s=0.01)
    contenders = [Contender("numpy", "baseline"), _Broken("bad", "fastnn", "wrong"),
                  _Broken("boom", "fastnn", "raise")]
    rows = {r["contender"]: r for r in runner._run_case(
        kernel, size, "float32", 1, contenders, inputs, reference, config, measure_memory=True)}
    assert rows["numpy"]["status"] == "ok" and rows["numpy"]["median_s"] > 0
    assert rows["bad"]["status"].startswith("wrong: y off by")
    assert rows["boom"]["status"] == "error: RuntimeError: kernel exploded"
    assert "median_s" not in rows["bad"] and "median_s" not in rows["boom"]


def test_reference_check_catches_nan_and_shape():
    reference = {"y": np.ones(4)}
    assert cases.compare({"y": np.ones(4, np.float32)}, reference, np.float32) == (0.0, "y")
    assert cases.compare({"y": np.full(4, np.nan)}, reference, np.float32)[0] == float("inf")
    assert cases.compare({"y": np.ones(5)}, reference, np.float32)[0] == float("inf")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kernel_name", list(cases.KERNELS))
def test_baseline_in_working_dtype_matches_float64_reference(kernel_name, dtype):
    kernel = cases.KERNELS[kernel_name]
    size = kernel.sizes[0]
    inputs = cases.case_inputs(kernel, size, dtype)
    reference = cases.reference_outputs(kernel, inputs)
    own = {k: (v.copy() if k in kernel.mutable else v) for k, v in inputs.items()}
    outputs = kernel.outputs(kernel.numpy(own)(), own)
    error, where = cases.compare(outputs, reference, dtype)
    assert cases.within_tolerance(error, dtype), (where, error)
    for name, value in outputs.items():
        assert np.asarray(value).dtype == np.dtype(dtype), name


# ----------------------------------------------------------------------------
# Timing, memory, targets, plot, speedups

def test_time_interleaved_rounds_and_order():
    calls = {"a": lambda: sum(range(100)), "b": lambda: sum(range(1000))}
    result = timing.time_interleaved(calls, budget_s=0.02, min_rounds=4)
    assert set(result) == {"a", "b"}
    assert all(t.rounds >= 4 and t.min <= t.median <= t.max for t in result.values())
    assert result["a"].median < result["b"].median


def test_peak_extra_bytes_counts_temporaries_not_outputs():
    def kernel():
        temporary = np.ones(1_000_000)          # 8 MB, freed before returning
        return np.zeros(10) + temporary[:10]

    extra, seconds = timing.peak_extra_bytes(kernel)
    assert 8_000_000 <= extra < 8_100_000 and seconds > 0
    assert timing.peak_extra_bytes(lambda: np.ones(1_000_000))[0] < 1000


def _row(contender, median, **extra):
    kind = {"numpy": "baseline", "torch": "torch"}.get(contender, "fastnn")
    backend = contender[len("fastnn["):].split("]")[0] if kind == "fastnn" else None
    row = dict(kernel="cross_entropy", size="large", label="2048x32000", dtype="float32",
               threads=2, contender=contender, kind=kind, backend=backend, status="ok",
               median_s=median)
    row.update(extra)
    return row


def test_targets_verdicts():
    rows = [_row("numpy", 1.0), _row("torch", 0.5),
            _row("fastnn[numba]", 0.2, vs_numpy=5.0, vs_torch=2.5, of_roof=0.65),
            _row("fastnn[numpy]", 1.0, vs_numpy=1.0, vs_torch=0.5),
            _row("fastnn[numpy]+out", 1.0, vs_numpy=1.0, vs_torch=0.5)]
    (verdict,) = targets.check(rows)           # the reference backend has no targets
    assert verdict["contender"] == "fastnn[numba]"
    criteria = verdict["criteria"]
    assert criteria["vs_numpy"] == {"wanted": 4.0, "got": 5.0, "met": True}
    assert criteria["vs_torch"]["met"] is True
    assert criteria["of_triad"]["met"] is True


def test_render_handles_failures_and_missing_figures():
    result = {"config": {"mode": "quick", "threads": [2], "dtypes": ["float32"]},
              "machine": {"date": "2026-01-01", "cpu": "test", "cpus_usable": 2,
                          "memory_bytes": None, "caches": {}, "versions": {"numpy": "2"},
                          "blas": None, "environment": {}},
              "contenders": ["numpy", "fastnn[x]"], "skipped": {"torch": "not installed"},
              "rows": [_row("numpy", 1e-3, min_s=1e-3, max_s=1e-3, min_bytes=10, flops=None,
                            vs_numpy=1.0, vs_torch=None),
                       _row("fastnn[x]", None, status="wrong: y off by 1", min_bytes=10,
                            flops=None)],
              "failures": [dict(_row("fastnn[x]", None), status="wrong: y off by 1")],
              "targets": [], "elapsed_s": 1.0}
    text = report.render(result)
    assert "WRONG: Y OFF BY 1" in text and "not run: torch: not installed" in text
    assert "1 contender run(s) FAILED" in text


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
