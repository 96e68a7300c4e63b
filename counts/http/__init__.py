"""Everything WSGI and Flask: who is calling (auth), and what the API answers."""
