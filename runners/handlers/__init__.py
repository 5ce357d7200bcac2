"""AWS Lambda entry points: thin adapters over the engine."""
