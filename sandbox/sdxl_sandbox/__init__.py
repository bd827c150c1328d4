"""The local sandbox: the operator, an API server (the real control plane or an emulator) and a local executor on one machine. Development only; not in the operator image."""
