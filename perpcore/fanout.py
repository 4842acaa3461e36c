"""Replay at scale: independent inputs fanned out over a Dask distributed cluster.

An input is independent when it is its own venue and nothing it does reaches another: each LOBSTER
message file (its own book), each Binance symbol's captures (its own book and pricing), each
stress shock (every shock restores the same starting state). A journal is one ordered log of one
venue: its commands are replayed in order on one engine, never split.

A task is a module-level function of a small picklable input returning a picklable result that
holds the input's state hash and no wall clock; `map` returns the results in input order, each
beside the seconds its task took where it ran. The sequential pool and the Dask pool call the same
task function, so a fanned-out run is the sequential run, spread out:

    with fanout.pool(workers=2) as pool:          # workers=0 (default): in this process, in order
        done = pool.map(task, [(a,), (b,)], shared=(big,), flag=True)   # task(big, a, flag=True)

`shared` arguments (a venue's snapshot) go to each worker once, not once per task. Dask
(`pip install 'perpcore[replay]'`) is imported only when a cluster is asked for.
"""
from __future__ import annotations

import hashlib
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator, NamedTuple, Sequence

Progress = Callable[[int, int], None]       # (inputs done, inputs)


class Done(NamedTuple):
    result: Any
    elapsed_s: float        # the task's wall time where it ran: beside its result, never in it


def timed(task: Callable, kwargs: dict, *args) -> Done:
    """What a worker runs: the task, and how long it took."""
    started = time.perf_counter()
    result = task(*args, **kwargs)
    return Done(result, time.perf_counter() - started)


def combined_hash(hashes: Sequence[str]) -> str:
    """One digest of several inputs' state hashes, in input order."""
    return hashlib.blake2b("\n".join(hashes).encode(), digest_size=32).hexdigest()


class Sequential:
    """Each task in this process, one after another, in input order."""

    description = "sequential (this process)"

    def map(self, task: Callable, calls: Sequence[tuple], shared: tuple = (),
            progress: Progress | None = None, **kwargs) -> list[Done]:
        out = []
        for call in calls:
            out.append(timed(task, kwargs, *shared, *call))
            if progress is not None:
                progress(len(out), len(calls))
        return out


class Distributed:
    """Each task on a worker of a Dask cluster; the results gathered in input order."""

    def __init__(self, client, description: str):
        self.client = client
        self.description = description

    def map(self, task: Callable, calls: Sequence[tuple], shared: tuple = (),
            progress: Progress | None = None, **kwargs) -> list[Done]:
        from distributed import as_completed

        # once to every worker, then passed by reference: a 100,000-account snapshot is not
        # shipped with each of its 17 shocks. Under a key of its own (hash=False): with the
        # content's key, the release of a previous map's copy could delete this one's data
        placed = [self.client.scatter(value, broadcast=True, hash=False) for value in shared]
        futures = [self.client.submit(timed, task, kwargs, *placed, *call, pure=False)
                   for call in calls]
        if progress is not None:
            for finished, _ in enumerate(as_completed(futures), start=1):
                progress(finished, len(futures))
        # a task's exception is raised here as the task raised it
        return self.client.gather(futures)


@contextmanager
def pool(workers: int = 0, scheduler: str | None = None) -> Iterator[Sequential | Distributed]:
    """The pool a run maps its inputs on: in this process (workers 0, no scheduler), a local
    cluster of `workers` processes (one thread each, on 127.0.0.1), or the cluster whose
    scheduler listens at `scheduler`. The client and a local cluster are closed on every path."""
    if workers < 0:
        raise ValueError(f"workers must be 0 (sequential) or more, not {workers}")
    if workers and scheduler:
        raise ValueError("give --workers (a local cluster) or --scheduler (an existing one), "
                         "not both")
    if not workers and not scheduler:
        yield Sequential()
        return
    try:
        from distributed import Client, LocalCluster
    except ImportError as e:
        raise ImportError(f"a fanned-out replay needs Dask (pip install 'perpcore[replay]'): "
                          f"{e}") from e
    if scheduler:
        with Client(scheduler) as client:
            yield Distributed(client, f"the Dask cluster at {scheduler}")
        return
    # no dashboard; the scheduler's HTTP server (health routes only) on a free loopback port
    # rather than 8787, which another cluster on the machine may hold
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      host="127.0.0.1", dashboard_address=None,
                      scheduler_kwargs={"dashboard_address": "127.0.0.1:0"}) as cluster, \
            Client(cluster) as client:
        yield Distributed(client, f"{workers} local Dask worker process"
                                  + ("es" if workers > 1 else ""))
