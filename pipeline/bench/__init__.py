"""Benchmarks as a command: `python -m pipeline.bench NAME [options] --json PATH`.

Each benchmark is a module here with `main(argv: list[str]) -> list[dict]`: it parses
its own options (argparse) and returns result rows, each `{"method": ..., one key per
figure}`. `pipeline.bench.__main__` adds the machine description, the command line,
prints the rows as a table and writes the JSON. Quote results in docs/benchmarks.md
beside the command that produced them.
"""

BENCHES: dict[str, str] = {
    "pipeline_overhead": "pipeline.bench.pipeline_overhead",  # issue 2
    "sketches": "pipeline.bench.sketches",  # issue 2
    "learned_index": "pipeline.bench.learned_index",  # issue 3
    "lego": "pipeline.bench.lego",  # issue 4
    "nn_training": "pipeline.bench.nn_training",  # issue 5
    "nn_layouts": "pipeline.bench.nn_layouts",  # issue 5
    "e2e_freq": "pipeline.bench.e2e_freq",  # issue 6
    "wavelet": "pipeline.bench.wavelet",  # issue 7
    "scaling": "pipeline.bench.scaling",  # issue 8
    "pipeline_scaling": "pipeline.bench.pipeline_scaling",
}
