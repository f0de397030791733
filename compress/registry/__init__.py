"""The model registry around the model-update cycle: GTO versions and stages, rollback, the
decisions log. May import every package below it but `steps` and `commands`' own."""
