"""Data: sources, prepared shards, datasets and loaders, Great Expectations checks, the data
profile and its drift checks. Imports `runtime`, `core` and `config`."""
