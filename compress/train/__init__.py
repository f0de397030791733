"""Training: the one loop (Schedule, fit), KD losses and the distillation objective shared by
distillation, pruning fine-tuning and QAT. Imports the packages before it (`runtime` to
`evaluation`)."""
