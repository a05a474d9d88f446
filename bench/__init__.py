"""Side-by-side benchmarks: `make bench` (see bench/README.md)."""
