"""Experiments above the agent core: they only configure and call it (`reproduce`, its `arms` and `report`)."""
