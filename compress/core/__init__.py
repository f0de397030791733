"""The machinery every stage shares: the error type, atomic writes, the artifact catalogue (every
out, metric and plot of dvc.yaml by name) and distributed processes. Imports only `runtime`."""
