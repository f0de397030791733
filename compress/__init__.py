"""compress: turn a trained teacher into a small, fast, accurate model.

The library is layered bottom-up (tests/test_architecture.py keeps it so): errors; atomic
writes and the artifact catalogue; the params schema; data, models, losses, ONNX export and
inference, quality figures, decisions, report; data checks, pruning, the training loop;
benchmarks and checkpoints; distillation and quantization; the steps (one per DVC stage);
the stage runner. Imports point down only, and none sits inside a function.
"""
