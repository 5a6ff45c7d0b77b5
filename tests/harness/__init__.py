"""Test harnesses, not fixtures: real processes and fault runs, shared by the tests and bench/."""
