"""The runtime around the agents: app factory, topics, settings, sinks, local stack, CLI."""
