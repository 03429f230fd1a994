"""Feature families of the registry, one module per family."""
