"""The recipe search: Optuna trials over params, their goals and report. Imports the packages
before it."""
