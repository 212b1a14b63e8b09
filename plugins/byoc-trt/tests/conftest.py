"""byoc-trt tests: GPU tests carry the ``gpu`` marker (``-m gpu`` selects them)."""


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs TensorRT and a CUDA device")
