"""Routing benchmark: the same heterogeneous pool of simulated nodes, the same load, one strategy per
column (round_robin, cheapest, balanced), several repetitions, medians side by side.

    python -m bench.routing                  # prints the table, writes bench/results/routing.md

See `pool.py` for the nodes, `load.py` for the client and what is measured, `table.py` for the report.
"""
