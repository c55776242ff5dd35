"""The placement simulator: modelled sites and arrival traces, decided by the service's own placement code.

``beambridge placement simulate SCENARIO.yml`` runs it from the command line; two scenarios ship in
``scenarios/``: ``balsam-paper`` (Balsam's APS XPCS runs to Theta, Cori and Summit) and
``internet-scale`` (10 facilities, 100,000 jobs, two outages and a drain).
"""

from beambridge.placement.simulator.engine import Simulation, SimulationResult, simulate
from beambridge.placement.simulator.scenario import (
    Scenario,
    ScenarioError,
    load_scenario,
    shipped_scenarios,
)

__all__ = [
    "Scenario",
    "ScenarioError",
    "Simulation",
    "SimulationResult",
    "load_scenario",
    "shipped_scenarios",
    "simulate",
]
