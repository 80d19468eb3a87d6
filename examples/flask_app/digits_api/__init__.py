"""digits-api: a Flask service that classifies 8x8 handwritten digits."""

from digits_api.app import create_app

__all__ = ["create_app"]
