"""What the socket executors share (SingleNodeExecutor, SlurmJobExecutor): workers that talk to this process over
zmq, a fresh one per call (:class:`~executorlib.schedulers.per_call.PerCallScheduler`) or a pool of long-lived ones
(:class:`~executorlib.schedulers.pool.PoolScheduler`), started by the executor's launcher."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from executorlib.executors.base import BaseExecutor, register_caller_module
from executorlib.executors.info import interactive_info
from executorlib.executors.options import ExecutorOptions, check_pool_size
from executorlib.graph_mode import NoScheduler
from executorlib.launchers.protocol import Launcher
from executorlib.resources import ExecutorRules, Resources
from executorlib.schedulers.protocol import Scheduler


class SocketExecutor(BaseExecutor):
    """Base of the executors whose workers are processes of their own, fed over sockets."""

    def _compose(
        self,
        options: ExecutorOptions,
        *,
        resources: Resources,
        rules: ExecutorRules,
        launcher: Launcher,
        core_budget: int | None,
        max_tasks: int | None,
        pool_size: Callable[[], int],
        localhost: bool,
    ) -> None:
        """Pick the scheduler (graph mode, a pool, or a worker per call) and start it with ``launcher``.

        ``core_budget``/``max_tasks`` bound the calls in flight without block allocation; ``pool_size()`` is the
        number of workers with it (called only then: it may warn or raise)."""
        self._options = options
        graph = options.graph()
        register_caller_module(depth=2)
        scheduler: Scheduler
        if graph is not None:  # record the workflow, run nothing (executorlib 1.x semantics)
            scheduler = NoScheduler()
        elif options.block_allocation:
            from executorlib.schedulers.pool import PoolScheduler

            scheduler = PoolScheduler(
                workers=pool_size(),
                resources=resources,
                init_function=options.init_function,
                restart_limit=options.restart_limit,
                localhost=localhost,
                launcher=launcher,
                log_obj_size=options.log_obj_size,
            )
        else:
            from executorlib.schedulers.per_call import PerCallScheduler

            scheduler = PerCallScheduler(
                core_budget=core_budget,
                max_tasks=max_tasks,
                localhost=localhost,
                launcher=launcher,
                log_obj_size=options.log_obj_size,
            )
        super().__init__(
            scheduler,
            resources=resources,
            rules=rules,
            fixed_resources=options.block_allocation,
            disable_dependencies=options.disable_dependencies,
            graph=graph,
            record_dependency_graph=options.record_dependency_graph,
            wait=options.wait,
        )

    def _describe(self) -> dict[str, Any]:
        return interactive_info(self._options, spawner=self._spawner_class(), workers=self._worker_count())

    def _spawner_class(self) -> type:
        """The 1.x spawner class ``info`` names for this executor's workers."""
        from executorlib.compat.spawners import MpiExecSpawner

        return MpiExecSpawner

    def _worker_count(self) -> int | None:
        if not self._options.block_allocation:
            return self._options.max_workers
        from executorlib.schedulers.pool import PoolScheduler

        scheduler = self._scheduler
        return scheduler.workers if isinstance(scheduler, PoolScheduler) else self._options.max_workers

    def _resize(self, workers: int) -> None:
        from executorlib.schedulers.pool import PoolScheduler

        scheduler = self._scheduler
        if not self._options.block_allocation or not isinstance(scheduler, PoolScheduler):
            super()._resize(workers)
            return
        check_pool_size(workers)
        if self._is_shutdown:
            raise RuntimeError("cannot change max_workers after shutdown")
        self._check_pool_size(workers)
        scheduler.resize(workers)

    def _check_pool_size(self, workers: int) -> None:
        """Reject a pool that cannot fit (e.g. a SLURM allocation) before anything changes."""
