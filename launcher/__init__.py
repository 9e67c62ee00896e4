"""The wiring of the services into processes: the ``evalforge`` CLI, ``evalforge up`` (everything in one
process) and each service alone. It sits above ``core`` and the services; nothing imports it but tests."""
