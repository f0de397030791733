"""Models: references (torchvision, timm, factories), weights-only checkpoints that rebuild
pruned models, ONNX export with the model contract, the ONNX teacher. Imports the packages
before it: `runtime`, `core`, `config`, `data`."""
