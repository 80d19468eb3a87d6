"""shipway's test kit: real local services, contract test classes, pytest fixtures.

Plugin authors subclass the contracts in :mod:`shipway.testing.contracts` and
provide the fixture that yields their configured backend; the fixtures in
:mod:`shipway.testing.plugin` (loaded automatically as a pytest plugin) start
the real services the contracts need.
"""
