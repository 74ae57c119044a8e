"""Development and test infrastructure (not product): local control plane, Azurite, node agent, demo."""
