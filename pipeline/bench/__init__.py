"""Benchmarks as a command: `python -m pipeline.bench NAME [options] --json PATH`.

Each benchmark is a module here with `main(argv: list[str]) -> list[dict]`: it parses
its own options (argparse) and returns result rows, each `{"method": ..., one key per
figure}`. `pipeline.bench.__main__` adds the machine description, the command line,
prints the rows as a table and writes the JSON. Quote results in docs/benchmarks.md
beside the command that produced them.
"""

BENCHES: dict[str, str] = {
    "pipeline_overhead": "pipeline.bench.pipeline_overhead",
    "sketches": "pipeline.bench.sketches",
    "learned_index": "pipeline.bench.learned_index",
    "lego": "pipeline.bench.lego",
    "nn_training": "pipeline.bench.nn_training",
    "nn_layouts": "pipeline.bench.nn_layouts",
    "e2e_freq": "pipeline.bench.e2e_freq",
    "wavelet": "pipeline.bench.wavelet",
    "scaling": "pipeline.bench.scaling",
    "pipeline_scaling": "pipeline.bench.pipeline_scaling",
}
