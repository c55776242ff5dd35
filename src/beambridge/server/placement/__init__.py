"""The placement service: snapshots of the sites from the database, decisions from :mod:`beambridge.placement`.

* :mod:`.snapshot` builds a :class:`~beambridge.placement.Snapshot` of one user's sites (health, pilots,
  backlog, measured run times and queue waits) from what the service already records;
* :mod:`.binding` writes a decision: the job's site and app, its transfer items, and the placement event
  that carries the policy and every site's estimate;
* :mod:`.service` places jobs at creation, binds jobs when they become runnable (late binding), and
  re-places the unclaimed jobs of sites that stopped taking work, every cycle.
"""
