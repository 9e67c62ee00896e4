"""Prompt optimisation (issue 19): propose better versions of a stored prompt, keep one only when it
wins on a frozen holdout with a significance test, and leave promoting it to a person.

``search`` (split, race, budget, decision; no I/O), ``proposer`` (the optimiser model's request and
reply), ``scoring`` (a prompt on items through the experiment runner), ``job`` (one job end to end),
``store`` (jobs in PostgreSQL), ``worker`` (claims and runs jobs), ``prompt_store`` (the prompt store).
"""
