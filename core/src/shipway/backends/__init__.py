"""Backend contracts and the built-in local backends."""
