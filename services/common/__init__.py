"""The runtime every asiarch service shares: server bootstrap, config, logging, clients, errors."""
