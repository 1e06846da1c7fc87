"""Ray as the one engine for every multi-run experiment (beyond, headroom, report, sweep).

Local by default: ``ray.init(num_cpus=...)`` on this machine, nothing to set up. With an address
(``--address`` or the ``RAY_ADDRESS`` variable) the same command runs on an existing cluster; its
nodes need this project installed (the same set-up) and the output directory on a shared file
system, since each job writes its run directory where it runs.

Each job is a Ray task of one CPU; Ray sets OMP_NUM_THREADS=1 in such workers and the training code
caps torch at one thread, so N CPUs run N jobs side by side.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

J = TypeVar("J")
R = TypeVar("R")


def connect(num_cpus: int | None = None, address: str | None = None) -> dict[str, Any]:
    """Start (or join) Ray once per process; return where it runs.

    ``address`` (or ``RAY_ADDRESS``) joins that cluster and ignores ``num_cpus``; otherwise a local
    instance with ``num_cpus`` CPUs (default: all of this machine's) starts. Joining a Ray that this
    process already started is a no-op."""
    import ray

    if not ray.is_initialized():
        address = address or os.environ.get("RAY_ADDRESS") or None
        quiet = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
        if address:
            ray.init(address=address, **quiet)
        else:
            if num_cpus is not None and num_cpus < 1:
                raise ValueError(f"--num-cpus must be >= 1, got {num_cpus}")
            ray.init(num_cpus=num_cpus, **quiet)
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    return {"ray_version": ray.__version__, "nodes": len(nodes),
            "cpus": int(ray.cluster_resources().get("CPU", 0))}


def _run_one(fn: Callable[[J], R], job: J) -> tuple[R, str]:
    import ray

    return fn(job), ray.get_runtime_context().get_node_id()


def run_all(fn: Callable[[J], R], jobs: Sequence[J], num_cpus: int | None = None,
            address: str | None = None, with_nodes: bool = False) -> list[R] | list[tuple[R, str]]:
    """``[fn(job) for job in jobs]`` as Ray tasks of one CPU each, results in the jobs' order.

    ``fn`` must be importable by the workers (a module-level function). ``with_nodes`` pairs each
    result with the id of the Ray node that computed it. A job that raises re-raises here, naming
    the job."""
    import ray

    if not jobs:
        return []
    connect(num_cpus, address)
    task = ray.remote(num_cpus=1, max_retries=0)(_run_one)
    refs = [task.remote(fn, job) for job in jobs]
    out = []
    for job, ref in zip(jobs, refs, strict=True):
        try:
            out.append(ray.get(ref))
        except ray.exceptions.RayTaskError as err:
            raise RuntimeError(f"job {job!r} failed: {err.cause!r}") from err.cause
    return out if with_nodes else [result for result, _ in out]


def add_arguments(parser: Any, num_cpus_help: str = "CPUs of the local Ray instance (default: all)") -> None:
    """The ``--num-cpus`` and ``--address`` options every Ray-backed script takes."""
    parser.add_argument("--num-cpus", "--jobs", dest="num_cpus", type=int, default=None, help=num_cpus_help)
    parser.add_argument("--address", default=None,
                        help="an existing Ray cluster's address (default: RAY_ADDRESS, else a local instance)")
