"""Identity (counts.identity): bearer tokens, Supabase-shaped and other providers' tokens, and
the JWKS key set against a real endpoint."""
