"""The marker store (counts.markers) against real Redis servers, and the topology REDIS_URL
names."""
