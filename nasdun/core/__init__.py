"""The ground: the one error type, the registries, typed config from mappings (imports nothing of nasdun above it)."""
