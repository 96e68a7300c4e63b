"""Attached mode: counts on an app's own database (examples/supabase-chat), written to in SQL."""
