"""A few training steps of one task as one rank of a torchrun job (or as a single process).

    torchrun --standalone --nproc-per-node 2 -m tests.training.ddp_worker TASK PREPARED OUT STEPS [DEVICE]

Every rank builds the task from the shipped params.yaml (tests.params.TINY), trains STEPS global
batches, and rank 0 saves the trained modules' weights to OUT (torch.save of a dict).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch


def main(task_name: str, prepared: Path, out: Path, steps: int, where: str = "cpu") -> None:
    from genpipe import device
    from genpipe.data.dataset import load_prepared
    from genpipe.training import distributed
    from genpipe.training.data import Batches
    from genpipe.training.task import TaskContext, get_task
    from tests.params import tiny_params

    torch.set_num_threads(1)
    params = tiny_params({"runtime": {"device": where}})
    data = load_prepared(prepared)
    runtime = device.resolve(params.runtime)
    with distributed.process_group(runtime.device, 120) as ranks:
        task = get_task(task_name).build(
            params, data, TaskContext(runtime, out.parent / f"work{ranks.rank}", ranks)
        )
        batches = Batches(
            data.train.images,
            data.train.labels,
            task.batch_size,
            runtime,
            task.data_order,
            10**9,
            0,
            task.drop_last,
            task.channels_last,
            ranks,
        )
        done = 0
        while done < steps:
            for batch in batches:
                task.train_step(batch, 1)
                done += 1
                if done == steps:
                    break
        state = {k: v for k, v in task.state_dict().items() if not k.startswith("opt")}
        if ranks.is_main:
            torch.save(state, out)
        ranks.barrier()


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]), *sys.argv[5:])
