"""The params.yaml schema, a module per section (so a stage depends on the sections it reads),
reading the file, and the whole-file check for the flows. Imports `runtime` and `core`."""
