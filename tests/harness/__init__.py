"""Test harness: real external services (Kafka broker, ...) started once per test run."""
