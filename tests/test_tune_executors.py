"""One search, many executors: serial, the single-threaded process pool, threads, a real Dask LocalCluster.

The same seeded search must give identical configurations and scores on
each, and the pool's workers must run one kernel thread each.
"""

import concurrent.futures
import os

import pytest

from fastnn import tune
from fastnn.tune import synthetic
from fastnn.tune.executors import available_cores, resolve_executor
from fastnn.tune.worker import ONE_THREAD_ENV

SPACE = {"lr": tune.loguniform(1e-6, 1), "beta": tune.one_minus_loguniform(0.5, 0.9999),
         "x": tune.uniform(-1, 1), "width": tune.integer(8, 256, log=True),
         "act": tune.choice(["relu", "tanh"]), "sleep": 0.005}

SEARCHES = {
    "random": lambda executor: tune.random_search(
        synthetic.slow_bowl, SPACE, 12, seed=11, executor=executor, progress=False),
    "c2f": lambda executor: tune.coarse_to_fine(
        synthetic.slow_bowl, SPACE, rounds=3, trials_per_round=6, seed=11, executor=executor,
        progress=False),
    "halving": lambda executor: tune.successive_halving(
        synthetic.slow_bowl_at_budget, SPACE, 9, min_budget=1, max_budget=9, seed=11,
        executor=executor, progress=False),
}


def outcomes(result):
    return [(t.number, t.params, t.score, t.metrics, t.status, t.round, t.config, t.budget)
            for t in result.trials]


@pytest.fixture(scope="module")
def serial_results():
    return {name: search(None) for name, search in SEARCHES.items()}


@pytest.fixture(scope="module")
def pool():
    with tune.process_pool() as executor:
        yield executor


@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster:
        with distributed.Client(cluster) as client:
            yield client


@pytest.mark.parametrize("name", list(SEARCHES))
def test_process_pool_gives_the_serial_results(serial_results, pool, name):
    assert outcomes(SEARCHES[name](pool)) == outcomes(serial_results[name])


def test_processes_string_makes_and_closes_its_own_pool(serial_results):
    assert outcomes(SEARCHES["random"]("processes")) == outcomes(serial_results["random"])


def test_thread_pool_gives_the_serial_results(serial_results):
    with concurrent.futures.ThreadPoolExecutor(3) as threads:
        assert outcomes(SEARCHES["c2f"](threads)) == outcomes(serial_results["c2f"])


@pytest.mark.parametrize("name", list(SEARCHES))
def test_dask_local_cluster_gives_the_serial_results(serial_results, dask_client, name):
    result = SEARCHES[name](dask_client.get_executor())
    assert outcomes(result) == outcomes(serial_results[name])
    # The search really ran on the cluster's workers.
    assert {t.metrics.get("pid") for t in tune.random_search(
        synthetic.thread_limits, {"x": 0}, 4, executor=dask_client, progress=False).trials
            } - {os.getpid()}


def test_a_distributed_client_is_used_through_its_executor(dask_client):
    executor, owned = resolve_executor(dask_client)
    assert isinstance(executor, concurrent.futures.Executor) and not owned


def test_pool_workers_run_one_kernel_thread_each(pool):
    result = tune.random_search(synthetic.thread_limits, {"i": tune.integer(0, 1000)}, 8,
                                executor=pool, progress=False)
    for trial in result.trials:
        metrics = trial.metrics
        assert metrics["env"] == {key: "1" for key in metrics["env"]}
        if metrics["start_env"] is not None:     # Linux: set before the interpreter started
            assert metrics["start_env"] == metrics["env"]
        assert metrics["blas_threads"] and set(metrics["blas_threads"]) == {1}
        assert metrics["numba_threads"] == 1 and metrics["fastnn_threads"] == 1
        assert metrics["pid"] != os.getpid()
    assert len({t.metrics["pid"] for t in result.trials}) <= available_cores()


def test_the_parent_keeps_its_own_environment():
    before = {key: os.environ.get(key) for key in ONE_THREAD_ENV}
    with tune.process_pool(1) as executor:
        executor.submit(synthetic.constant, {}).result()
    assert {key: os.environ.get(key) for key in ONE_THREAD_ENV} == before


def test_process_pool_defaults_to_one_worker_per_core():
    with tune.process_pool() as executor:
        assert executor._max_workers == available_cores()
    with pytest.raises(ValueError, match="^max_workers:"):
        tune.process_pool(0)


def test_dask_local_executor_runs_a_search(serial_results):
    pytest.importorskip("distributed")
    from fastnn.tune.executors import dask_local_executor
    with dask_local_executor(n_workers=1) as executor:
        assert isinstance(executor, concurrent.futures.Executor)
        assert outcomes(SEARCHES["halving"](executor)) == outcomes(serial_results["halving"])
        limits = tune.random_search(synthetic.thread_limits, {"x": 0}, 1, executor=executor,
                                    progress=False).trials[0].metrics
    assert limits["pid"] != os.getpid()
    assert limits["numba_threads"] == 1 and set(limits["blas_threads"]) == {1}
    assert limits["start_env"] in (None, {key: "1" for key in limits["start_env"]})
