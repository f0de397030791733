"""Using a model the pipeline exported, without the pipeline: the contract a model file carries,
reading images the way data preparation did, ONNX Runtime and OpenVINO runners, the `Classifier`
API and the `compress-predict` command. Imports numpy, Pillow and onnxruntime (OpenVINO when
asked for) and nothing else of `compress`: installable alone as the `compress-runtime`
distribution (runtime/pyproject.toml). Every other package may import it."""
