"""Experiments: a dataset version (or benchmark draw) x a target x evaluators x repetitions.

``store`` (PostgreSQL), ``targets`` (model calls), ``runner`` (one server-side run), ``worker`` (runs
jobs from the bus), ``stats`` (summary, paired comparison)."""
