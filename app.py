"""Portside's Chalice entry point (API Gateway + Lambda)."""

from chalicelib.application import create_app

app = create_app()
