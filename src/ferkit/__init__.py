"""ferkit: imbalance-aware facial expression recognition on FER-2013."""

__version__ = "0.1.0"


def __getattr__(name: str):
    # `ferkit.Predictor` without importing OpenCV and onnxruntime for every `import ferkit`.
    if name == "Predictor":
        from ferkit.infer import Predictor

        return Predictor
    raise AttributeError(f"module 'ferkit' has no attribute {name!r}")
