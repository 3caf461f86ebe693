"""End-to-end learned data structures (seed 000): nearest-neighbour search (§2) and
frequency estimation (§3). Both share the query networks in `lookup.py`."""
