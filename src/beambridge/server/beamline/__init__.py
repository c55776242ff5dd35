"""The beamline end, on the service side: stored workflows, idempotent submissions, beamline events."""
