"""Runs the jobs of a training matrix one after another or in a pool of worker processes.

On CPU each worker takes the next entry; on CUDA each card is a lane that trains its entries
one at a time, so two trainings never share a card. Per-epoch figures reach the caller, in the
calling process, as they happen in any worker.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import queue
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any

import torch

from hft_pipeline.training.loop import resolve_device
from hft_pipeline.training.matrix import EntryJob, EpochRow, MatrixEntry, MatrixResult, train_entry

# How often the parent process forwards progress while workers train, in seconds.
PROGRESS_POLL_S = 0.5


def run_matrix(
    jobs: Sequence[EntryJob],
    workers: int = 1,
    on_epoch: Callable[[MatrixEntry, EpochRow], None] | None = None,
) -> list[MatrixResult]:
    """Trains every job, ``workers`` at a time; results come back in the jobs' order.

    Parameters
    ----------
    jobs : Sequence[EntryJob]
        From :func:`~hft_pipeline.training.matrix.plan_jobs`.
    workers : int, default 1
        1 trains in this process, one entry after another. More starts a pool of worker
        processes: on CPU that many entries train at once, each worker with its share of the
        cores; on CUDA one lane per card (at most ``workers``), one entry at a time per card.
    on_epoch : Callable[[MatrixEntry, EpochRow], None], optional
        Called in this process with each epoch's history row, whichever process trained it.

    Raises
    ------
    RuntimeError
        Naming the first entry whose training failed; entries not yet started are
        cancelled, those running finish first, and finished ones keep their folders.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, found {workers}")
    lanes = plan_lanes(jobs, workers)
    at_once = min(workers, len(lanes))
    if at_once <= 1:
        return train_lane([job for lane in lanes for job in lane], on_epoch)
    context = multiprocessing.get_context("spawn")  # CUDA cannot be used after a fork
    threads = max(1, (os.cpu_count() or 1) // at_once)
    with (
        context.Manager() as manager,
        ProcessPoolExecutor(
            at_once, mp_context=context, initializer=torch.set_num_threads, initargs=(threads,)
        ) as pool,
    ):
        progress = manager.Queue()
        reporter = None if on_epoch is None else QueueProgress(progress)
        pending = {pool.submit(train_lane, lane, reporter) for lane in lanes}
        finished: list[MatrixResult] = []
        while pending:
            done, pending = wait(pending, timeout=PROGRESS_POLL_S, return_when=FIRST_COMPLETED)
            forward_progress(progress, on_epoch)
            for future in done:
                error = future.exception()
                if error is not None:
                    for other in pending:
                        other.cancel()
                    raise error
                finished.extend(future.result())
        forward_progress(progress, on_epoch)
    by_entry = {outcome.entry: outcome for outcome in finished}
    return [by_entry[job.entry] for job in jobs]


def plan_lanes(jobs: Sequence[EntryJob], workers: int) -> list[list[EntryJob]]:
    """Lanes run in parallel, the jobs of a lane one after another.

    On CPU every job is its own lane (a free worker takes the next one). On CUDA there is a
    lane per card, up to ``workers``, jobs dealt round robin and pinned to their lane's card;
    a device setting that names one card (``cuda:1``) is a single lane.
    """
    if not jobs:
        return []
    device = resolve_device(jobs[0].training.device)
    if device.type != "cuda":
        return [[job] for job in jobs]
    cards = 1 if device.index is not None else torch.cuda.device_count()
    n_lanes = min(workers, cards, len(jobs))
    if n_lanes == 1:
        return [list(jobs)]
    lanes: list[list[EntryJob]] = [[] for _ in range(n_lanes)]
    for position, job in enumerate(jobs):
        card = position % n_lanes
        pinned = dataclasses.replace(job.training, device=f"cuda:{card}")
        lanes[card].append(dataclasses.replace(job, training=pinned))
    return lanes


def train_lane(
    lane: Sequence[EntryJob], on_epoch: Callable[[MatrixEntry, EpochRow], None] | None
) -> list[MatrixResult]:
    """Trains a lane's jobs in turn (in this process or a worker)."""
    results = []
    for job in lane:
        report = None if on_epoch is None else _bind_entry(on_epoch, job.entry)
        try:
            results.append(MatrixResult(job.entry, train_entry(job, report)))
        except Exception as error:
            # Any failure (bad data, unknown model kind, CUDA out of memory) must say which
            # entry of which window it hit; the original stays chained.
            raise RuntimeError(
                f"matrix entry {job.entry.name} of window {job.inputs.name} failed: "
                f"{type(error).__name__}: {error}"
            ) from error
    return results


def _bind_entry(
    on_epoch: Callable[[MatrixEntry, EpochRow], None], entry: MatrixEntry
) -> Callable[[EpochRow], None]:
    return lambda row: on_epoch(entry, row)


@dataclasses.dataclass(frozen=True)
class QueueProgress:
    """A worker's ``on_epoch``: sends (entry, row) to the parent through a manager queue."""

    channel: Any  # multiprocessing.managers queue proxy (picklable)

    def __call__(self, entry: MatrixEntry, row: EpochRow) -> None:
        self.channel.put((entry, row))


def forward_progress(
    channel: Any, on_epoch: Callable[[MatrixEntry, EpochRow], None] | None
) -> None:
    """Hands every queued (entry, row) to ``on_epoch``, in arrival order."""
    while True:
        try:
            entry, row = channel.get_nowait()
        except queue.Empty:
            return
        if on_epoch is not None:
            on_epoch(entry, row)
