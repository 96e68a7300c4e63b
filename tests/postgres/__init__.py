"""Postgres (counts.postgres): the connection pool and the migrations."""
