"""Fakes of the vendors our sinks talk to, checking what the real services check (own tests)."""
