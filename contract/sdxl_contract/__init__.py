"""What the operator and the workloads must agree on, defined once; imports nothing of ours and no third-party package."""
