"""Clients against the live service: the Python client (counts_client) polling and streaming, and
real HTTP clients (curl, CacheControl, REDbot)."""
