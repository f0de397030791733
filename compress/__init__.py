"""compress: turn a trained teacher into a small, fast, accurate model.

One package per concept, bottom-up (tests/test_architecture.py keeps the order, `PACKAGES`):
runtime (using an exported model, no torch), core, config, data, models, evaluation, train,
compression, search, steps (one per DVC stage), commands. A module imports its own package and
the packages before it, never one after it, and no first-party import sits inside a function.
"""
