"""What runs at the beamline: workflow files, the folder watcher, online change detection and alerts.

Everything here is a client of the service like any other SDK user (see ``DESIGN.md``).
"""
