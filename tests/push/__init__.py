"""Push (counts.push): devices, the dispatcher's rules, each provider against its fake, the worker."""
