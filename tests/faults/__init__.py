"""The fault matrix: each fault under traffic, then 0 stale clients, 0 lost writes, no bad 5xx."""
