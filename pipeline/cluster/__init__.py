"""Helpers for running the pipeline on more than one Ray node: a local multi-node
cluster for tests and benchmarks (`pipeline.cluster.local`) and fault injection
(`pipeline.cluster.faults`). Cloud cluster configs live in clusters/ at the top."""
