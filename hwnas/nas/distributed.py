"""Scoring and refinement trainings as Ray tasks: ``--workers N`` starts a local Ray cluster of N worker processes,
``--ray-address`` joins a running cluster (every node needs hwnas and its dependencies installed).

A task measures one evaluation exactly as the search's own process would: the same configuration, seed-derived
weights (:func:`hwnas.sim.seeding.build_seeded`), scoring batches and thread count, so a search's results do not
depend on how many workers computed them (the tests compare with a serial run). What is parallel: the random
strategy's candidates, the cells a prune search adds to its refinement pool, the screening trainings and each
refinement rung's trainings. What stays in the search's process: the prune strategy's rounds (each ablation depends on the last
pruning) and the evolution (its candidates inherit the trained supernet's weights).

Ray is imported only here, and only when one of the two options is given.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Iterator

import torch

from ..errors import OptionError, SearchError, first_line

_MEASURERS: dict[str, object] = {}  # per worker process: the measurer of each search job it has served


@dataclass
class SearchJob:
    """What a worker needs to measure the evaluations of one search (shipped once through Ray's object store)."""

    token: str
    config: object
    target: object
    templates: list
    batches: list  # the scoring batches, on the CPU
    score_config: object
    splits: object  # the dataset, for refinement trainings (validation: the subset that ranks them)
    whole: object = None  # the same with the whole validation split, for the last rung (None: splits' is whole)

    def measurer(self):
        """This worker's :class:`~hwnas.nas.candidates.CandidateMeasurer` for the job (built once)."""
        if self.token not in _MEASURERS:
            from ..sim.seeding import resolve_device
            from .candidates import CandidateMeasurer
            from .evaluate import Evaluator

            # Ray shows a task the GPU it was given as the only one: cuda:N of the search is cuda on a worker
            device = "cuda" if self.config.device.startswith("cuda") else self.config.device
            evaluator = Evaluator(self.batches, self.score_config, resolve_device(device))
            _MEASURERS.clear()  # one search at a time per worker
            _MEASURERS[self.token] = CandidateMeasurer(self.config, self.target, self.templates, evaluator)
        return _MEASURERS[self.token]


def run_task(job: SearchJob, task: tuple) -> dict:
    """Measure one evaluation: ``("cell", cell key, skeleton)``, ``("screen", cell key, skeleton, share of the
    training split)`` or ``("refine", cell key, skeleton, epochs, share of the training split, previous state bytes
    or None, whether it validates on the whole validation split)``."""
    from ..arch.genotype import parse_cell_key
    from ..sim.seeding import computing_threads

    with computing_threads(job.config.threads):
        measurer = job.measurer()
        if task[0] == "cell":
            return measurer.measure_cell(parse_cell_key(task[1]), task[2])
        if task[0] == "screen":
            return measurer.screen_training(parse_cell_key(task[1]), task[2], task[3], job.splits)
        if task[0] == "refine":
            if task[6] and job.whole is None:  # the search records the whole split's size for this rung
                raise ValueError("a last-rung task validates on the whole split, but the job has none")
            return measurer.refine_training(parse_cell_key(task[1]), task[2], task[3],
                                            job.whole if task[6] else job.splits, task[4], task[5],
                                            best_from_here=task[6])
    raise ValueError(f"unknown task {task[0]!r}")


class WorkerPool:
    """Ray tasks for one search; :meth:`close` shuts down a cluster this pool started."""

    def __init__(self, workers: int | None, address: str | None, threads: int, device: torch.device) -> None:
        if workers is None and address is None:
            raise ValueError("a pool needs --workers or --ray-address")
        try:
            import ray
        except ModuleNotFoundError:
            raise OptionError("--workers and --ray-address need Ray: pip install 'hwnas[ray]'") from None
        self.ray = ray
        self.started = not ray.is_initialized()
        if self.started:
            try:
                if address:
                    ray.init(address=address, logging_level="ERROR", log_to_driver=False)
                else:
                    ray.init(num_cpus=workers * threads, num_gpus=1 if device.type == "cuda" else 0,
                             include_dashboard=False, logging_level="ERROR", log_to_driver=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise OptionError(f"could not {'join the Ray cluster at ' + address if address else 'start Ray'}: "
                                  f"{first_line(exc)}") from None
        resources = ray.cluster_resources()
        if device.type == "cuda" and not resources.get("GPU"):
            self.close()
            raise OptionError(f"the search computes on {device} but the Ray cluster has no GPU: use --device cpu")
        self.workers = workers or max(1, int(resources.get("CPU", 1)) // threads)
        # on CUDA the workers share the GPU (Ray hides it from tasks that ask for none)
        gpus = 1.0 / self.workers if device.type == "cuda" else 0
        self.remote = ray.remote(num_cpus=threads, num_gpus=gpus, max_retries=0)(run_task)
        self.job_ref = None
        self.where = f"{self.workers} Ray worker(s)" + (f" at {address}" if address else "")

    def describe(self) -> str:
        """The pool in words, for progress messages."""
        return self.where

    def share(self, job: SearchJob) -> None:
        """Put the job in the object store once; every later task reads it from there."""
        self.job_ref = self.ray.put(job)

    def run(self, tasks: list[tuple]) -> Iterator[tuple[int, dict]]:
        """Run ``tasks``, yielding ``(index in tasks, result)`` as each completes; a failed task is a one-line
        :class:`SearchError` (the results already yielded are kept by the caller)."""
        pending = {self.remote.remote(self.job_ref, task): index for index, task in enumerate(tasks)}
        try:
            while pending:
                done, _ = self.ray.wait(list(pending), num_returns=1)
                index = pending.pop(done[0])
                try:
                    result = self.ray.get(done[0])
                except self.ray.exceptions.RayError as exc:
                    cause = getattr(exc, "cause", None) or exc
                    raise SearchError(f"a Ray worker failed on {tasks[index][0]} {tasks[index][1]}: "
                                      f"{first_line(cause)}") from None
                yield index, result
        finally:
            for ref in pending:
                self.ray.cancel(ref, force=True)

    def close(self) -> None:
        """Shut down the local cluster this pool started (a joined cluster keeps running)."""
        if self.started and self.ray.is_initialized():
            self.ray.shutdown()


def new_job(config, target, templates, evaluator, splits, whole=None) -> SearchJob:
    """The job of a search: its configuration, target, skeletons, scoring batches (on the CPU) and data (``splits``
    validating on the subset that ranks the trainings, ``whole`` on the whole validation split when that differs;
    their training tensors are the same objects, pickled once)."""
    return SearchJob(uuid.uuid4().hex, config, target, list(templates), [b.cpu() for b in evaluator.batches],
                     evaluator.config, splits, whole)
