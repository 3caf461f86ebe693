"""The Lego sketch (seed 003): a neural sketch of memory bricks, trained once on one brick
and composed for any budget. `model` is the network, `brick` its geometry and hashes,
`streams` the Zipf data, `train` the meta-task training, `evaluate` the budget sweep
against the classic sketches, `workload` the pipeline entry points `lego` and `lego_eval`.

    python -m pipeline.run tasks/lego.yaml        # quick profile: train, evaluate, plot
"""
