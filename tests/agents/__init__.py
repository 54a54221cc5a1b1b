"""Tests of the model-driven agent, its providers, the verifier and the simulated agent."""
