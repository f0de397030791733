"""Where a process starts: the stage runner (logging, exit codes 1 / 75, torchrun launch) and
the `compress` command. Imports any package of the library."""
