"""The model registry around the model-update cycle: GTO versions and rollback, the decisions
log. Imports the packages before it."""
