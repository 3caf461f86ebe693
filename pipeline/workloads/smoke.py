"""A tiny torch workload that goes through Ray Train's TorchTrainer, so the Train path
of the pipeline is exercised in tests: fit y = 3x - 1 with a linear layer.

Run: `python -m pipeline.run tasks/smoke.yaml`.
"""

from __future__ import annotations

import torch
from pydantic import Field

from pipeline.workloads.base import LocalReporter, Params, Reporter, Workload, shard, unwrap


class SmokeParams(Params):
    lr: float = Field(0.05, gt=0, description="SGD learning rate")
    epochs: int = Field(5, ge=1, description="passes over the data; one report each")
    points: int = Field(256, ge=2, description="training points")
    width: int = Field(1, ge=1, description="hidden width (1 = plain linear model); a fake 'space' objective")
    seed: int = Field(0, description="data and init seed")
    batch_size: int = Field(32, ge=1, description="global mini-batch: split over the Train workers, lr unchanged")
    fail_at_epoch: int = Field(-1, description="raise at this epoch on the first attempt (tests retries); -1 never")


def run(params: SmokeParams, report: Reporter) -> dict[str, float]:
    generator = torch.Generator().manual_seed(params.seed)
    x = torch.rand(params.points, 1, generator=generator) * 2 - 1
    y = 3 * x - 1
    torch.manual_seed(params.seed)
    layers = [torch.nn.Linear(1, params.width)] + ([torch.nn.Linear(params.width, 1)] if params.width > 1 else [])
    model = report.prepare_model(torch.nn.Sequential(*layers))
    optimiser = torch.optim.SGD(model.parameters(), lr=params.lr)
    state = report.load_checkpoint()
    start = 0
    if state is not None:
        unwrap(model).load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        start = state["epoch"] + 1
    x, y = x.to(report.device), y.to(report.device)
    loss = torch.tensor(0.0)
    for epoch in range(start, params.epochs):
        if epoch == params.fail_at_epoch and state is None:
            raise RuntimeError(f"injected failure at epoch {epoch}")
        for batch in range(0, params.points, params.batch_size):
            xb, yb = x[batch:batch + params.batch_size], y[batch:batch + params.batch_size]
            part = shard(report, len(xb))  # this worker's slice of the global mini-batch
            optimiser.zero_grad()
            loss = torch.nn.functional.mse_loss(model(part.take(xb)), part.take(yb)) * part.weight
            loss.backward()
            optimiser.step()
        with torch.no_grad():  # the whole data set: the same on every worker
            loss = torch.nn.functional.mse_loss(unwrap(model)(x), y)
        report.save_checkpoint({"model": unwrap(model).state_dict(), "optimiser": optimiser.state_dict(),
                                "epoch": epoch})
        report({"loss": float(loss), "epoch": float(epoch)}, step=epoch)
    if report.world_rank == 0:
        (report.artifact_dir / "model.txt").write_text(str([p.detach().cpu().tolist() for p in model.parameters()]))
    return {"loss": float(loss), "parameters": float(sum(p.numel() for p in model.parameters()))}


WORKLOAD = Workload(
    name="smoke",
    params=SmokeParams,
    run=run,
    metrics=("loss", "parameters", "epoch"),
    description="tiny linear regression through Ray Train's TorchTrainer (tests the Train path)",
    uses_torch=True,
    smoke_params={"epochs": 2, "points": 64},
)

if __name__ == "__main__":
    print(run(SmokeParams(), LocalReporter()))
