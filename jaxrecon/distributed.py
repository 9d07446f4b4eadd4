"""Many processes, one job: JAX's multi-controller runtime (``jax.distributed``) behind three flags.

A job of ``K`` processes (one per GPU on a cluster, or ``K`` processes on one machine) is started
by the cluster's launcher (``srun``, ``mpirun``) or by hand. Each process calls
:func:`initialize` once, before any JAX computation:

* explicit flags ``--coordinator HOST:PORT --num-processes K --process-id I`` (all three);
* otherwise, under SLURM (``srun``) or Open MPI (``mpirun``) with more than one task, JAX's own
  cluster detection finds the coordinator, ``K`` and ``I`` (and, on GPUs, gives each process the
  GPU of its local rank);
* otherwise one process, exactly as without this module.

On CPUs the cross-process collectives are gloo's (``jax_cpu_collectives_implementation``), set
before initialising; on GPUs they are NCCL's. A process that dies stops sending heartbeats and
JAX's coordination service then terminates the others (after ``heartbeat_timeout_seconds``):
the whole job fails, and rerunning it resumes (sweeps keep every finished point).

:func:`mesh_devices` picks the devices of a mesh so that every process contributes the same
number of its local devices (a process outside a mesh could not run the mesh's programs).
"""

from __future__ import annotations

import argparse
import os
from typing import NamedTuple, Optional

import jax
import numpy as np

#: Environment variables of a multi-process launch that JAX's cluster detection reads, with the
#: variable holding the number of processes.
_CLUSTER_ENVS = (
    ("SLURM", ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_PROCID", "SLURM_LOCALID"), "SLURM_NTASKS"),
    ("Open MPI", ("OMPI_MCA_orte_hnp_uri", "OMPI_COMM_WORLD_RANK"), "OMPI_COMM_WORLD_SIZE"),
)


class ProcessFlags(NamedTuple):
    """Where a process stands in its job (``None`` everywhere: detect or run alone)."""

    coordinator: Optional[str] = None  # "HOST:PORT" of process 0's coordination service
    num_processes: Optional[int] = None
    process_id: Optional[int] = None

    @property
    def explicit(self) -> bool:
        return any(v is not None for v in self)


def add_process_arguments(parser: argparse.ArgumentParser) -> None:
    """The three process flags (a group of ``parser``)."""
    g = parser.add_argument_group(
        "processes", "run as one of K processes (JAX's multi-controller runtime); under srun or mpirun "
                     "with several tasks they are detected, so these flags are for launching by hand")
    g.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                   help="address of process 0's coordination service (every process gives the same)")
    g.add_argument("--num-processes", type=int, default=None, metavar="K", help="number of processes in the job")
    g.add_argument("--process-id", type=int, default=None, metavar="I", help="this process, in [0, K)")


def flags_from_args(args) -> ProcessFlags:
    return ProcessFlags(getattr(args, "coordinator", None), getattr(args, "num_processes", None),
                        getattr(args, "process_id", None))


def check_flags(flags: ProcessFlags) -> ProcessFlags:
    """One-line ``ValueError`` naming the flag for an incomplete or impossible set of flags."""
    if not flags.explicit:
        return flags
    for name, v in (("--coordinator", flags.coordinator), ("--num-processes", flags.num_processes),
                    ("--process-id", flags.process_id)):
        if v is None:
            raise ValueError(f"{name}: missing; launching by hand needs --coordinator, --num-processes "
                             f"and --process-id together")
    k, i = flags.num_processes, flags.process_id
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"--num-processes: must be a positive integer, got {k!r}")
    if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < k:
        raise ValueError(f"--process-id: must be in [0, {k}) for --num-processes {k}, got {i!r}")
    host, sep, port = str(flags.coordinator).rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--coordinator: must be HOST:PORT with a port in 1..65535, got {flags.coordinator!r}")
    return flags


def detected_cluster(environ=None) -> Optional[tuple[str, int]]:
    """``(name, K)`` of a SLURM or Open MPI launch with ``K > 1`` tasks in ``environ``, else ``None``."""
    environ = os.environ if environ is None else environ
    for name, needed, count in _CLUSTER_ENVS:
        if all(v in environ for v in needed) and count in environ:
            try:
                k = int(environ[count])
            except ValueError:
                continue
            if k > 1:
                return name, k
    return None


def is_initialized() -> bool:
    from jax._src import distributed as _dist  # jax.distributed has no public query

    return _dist.global_state.client is not None


def initialize(flags: ProcessFlags = ProcessFlags(), timeout: int = 300, log=None) -> bool:
    """Join the job described by ``flags`` (or detected): ``jax.distributed.initialize``.

    Returns whether this is a multi-process run. Call before any JAX computation; a second call
    (e.g. a library user who initialised already) is a no-op. ``timeout``: seconds to wait for all
    processes to connect."""
    flags = check_flags(flags)
    if is_initialized():
        return jax.process_count() > 1
    cluster = None if flags.explicit else detected_cluster()
    if not flags.explicit and cluster is None:
        return False
    if flags.explicit and flags.num_processes == 1:
        return False
    # gloo carries the cross-process collectives of CPU devices; GPUs ignore this option
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if flags.explicit:
        jax.distributed.initialize(flags.coordinator, flags.num_processes, flags.process_id,
                                   initialization_timeout=timeout)
    else:
        jax.distributed.initialize(initialization_timeout=timeout)
    if log:
        how = f"detected {cluster[0]}" if cluster else f"coordinator {flags.coordinator}"
        log(f"process {jax.process_index()} of {jax.process_count()} ({how}); "
            f"{jax.local_device_count()} local of {jax.device_count()} {jax.devices()[0].platform} devices")
    return jax.process_count() > 1


def process_index() -> int:
    return jax.process_index() if is_initialized() else 0


def process_count() -> int:
    return jax.process_count() if is_initialized() else 1


def mesh_devices(count: int, name: str = "shards") -> np.ndarray:
    """``count`` devices for a one-axis mesh: ``jax.devices()[:count]`` in one process; with ``K``
    processes, the first ``count / K`` local devices of every process, in process order (so each
    process holds a contiguous range of the mesh; ``count`` must be a multiple of ``K``)."""
    k = process_count()
    if k == 1:
        return np.asarray(jax.devices()[:count])
    if count % k:
        raise ValueError(f"{name}: {count} devices cannot be split evenly over {k} processes; "
                         f"use a multiple of {k}")
    per = count // k
    by_process: dict = {}
    for dev in jax.devices():
        by_process.setdefault(dev.process_index, []).append(dev)
    if any(len(by_process.get(i, [])) < per for i in range(k)):
        raise ValueError(f"{name}: {count} devices need {per} per process, but a process has fewer "
                         f"({jax.local_device_count()} here)")
    return np.asarray([d for i in range(k) for d in by_process[i][:per]])


def host_local(tree):
    """``tree`` with every array that spans other processes' devices gathered into a local NumPy
    array (the same on every process); other leaves unchanged. Use on small results (``theta``)
    that host code reads."""

    def gather(a):
        if isinstance(a, jax.Array) and not a.is_fully_addressable:
            from jax.experimental import multihost_utils

            return np.asarray(multihost_utils.process_allgather(a, tiled=True))
        return a

    return jax.tree_util.tree_map(gather, tree)
