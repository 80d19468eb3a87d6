"""shipway: from a commit and a model version to one verified image, and on to a running service.

Plugins import only the modules and names docs/plugins.md lists under "What a
plugin may import" (the contracts in ``shipway.backends.base``, ``shipway.domain``,
``shipway.errors``, the test kit, ...). Every other module is internal to
shipway and may change in any release; tests/test_public_api.py holds the
plugins and examples in this repository to the list.
"""

__version__ = "0.1.0"
