"""Making models smaller: the student (fresh, warm, cut from the teacher), structured pruning,
NNCF quantization, the real INT8 ONNX export and INT8 sensitivity. Imports the packages before
it (`runtime` to `train`)."""
