"""Adapters from beamline control systems to beambridge workflows (Bluesky run documents, …)."""
