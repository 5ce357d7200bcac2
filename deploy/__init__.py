"""Deployment: Lambda packages, CloudFormation stacks and S3 uploads, driven by the
pynt tasks in ``build.py``. Never shipped: the packages it builds hold ``runners`` only."""
