"""The int8 (and other precision) lowering shared by latency tables and exporters: ONNX QDQ (onnxruntime),
LiteRT (litert-torch PT2E), OpenVINO (NNCF), CoreML (coremltools). Each backend module imports its toolkit lazily."""
