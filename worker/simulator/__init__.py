"""The Isograd simulator: a faithful local model of the Isograd API (token, /api/usage, callbacks).

Start it with `isograd-relay simulator`, or build the app with
`create_simulator_app(SimulatorConfig(client_id=..., client_secret=..., public_url=...))`; the
control API is documented in `worker.simulator.control`.
"""

from worker.simulator.app import create_simulator_app
from worker.simulator.state import SimulatorConfig

__all__ = ["SimulatorConfig", "create_simulator_app"]
