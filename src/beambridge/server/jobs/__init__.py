"""Job logic, independent of HTTP: creation, transitions (the state machine applied), queries."""
