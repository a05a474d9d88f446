"""The node simulator: an OpenAI-compatible inference node with realistic timing and faults.

Used by `atoma-proxy demo` (several in-process nodes), by the proxy's tests (chaos, cancellation,
pass-through) and as the benchmarks' direct-upstream baseline. See `app.build_app` for the HTTP
surface, `config.SimConfig` for the knobs and `server.start_node_sim` to run one.
"""

from atoma_proxy.nodesim.app import build_app
from atoma_proxy.nodesim.config import SimConfig, add_cli_arguments, config_from_args
from atoma_proxy.nodesim.server import RunningNodeSim, run_node_sim, start_node_sim

__all__ = [
    "RunningNodeSim",
    "SimConfig",
    "add_cli_arguments",
    "build_app",
    "config_from_args",
    "run_node_sim",
    "start_node_sim",
]
