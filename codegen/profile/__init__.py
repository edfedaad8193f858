"""Profiling on the target: runners, the benchmark harness and the profile cache."""
