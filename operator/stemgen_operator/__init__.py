"""The stemgen operator: kopf handlers that turn StemGenerations into Jobs and follow them."""
