"""What tests and benchmarks share: real services started and stopped, clients, helpers."""
