"""What an operator runs against a deployment: ``python -m runners jobs``."""
