"""Simulated data with known truth, for the demo and the tests."""
