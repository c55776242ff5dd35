"""Dispatch: launcher sessions, acquiring work (with long-poll), reports, and session expiry."""
