"""`TorchRunner`: a checkpoint's model in PyTorch, the torch backend of `Predictor` (torch loads
only when one is made)."""

from __future__ import annotations

from typing import Any

import numpy as np


class TorchRunner:
    """A checkpoint's model in PyTorch: model inputs (N,1,48,48) in [-1, 1] -> probabilities (N,C)."""

    def __init__(self, checkpoint: Any, device: str = "cpu", bf16: bool | str = "auto", threads: int | None = None):
        import torch

        from ferkit.models import fold_batchnorm, load_model
        from ferkit.runtime.device import bf16_available, set_threads
        from ferkit.runtime.memory import keep_freed_memory

        if threads is not None:
            set_threads(threads)  # torch's intra-op threads: process-wide
        keep_freed_memory()
        self.device = torch.device(device)
        model, self.info = load_model(checkpoint, map_location="cpu")  # info["calibration"]: the record, if any
        # BatchNorm folded into the convolutions (one pass over the activations fewer), and
        # channels_last: oneDNN's convolutions run about 2x faster on CPU in this layout.
        # torch's stubs for Module.to lack memory_format, which it takes (and passes on to each tensor)
        model = fold_batchnorm(model.eval()).to(self.device, memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.model = model.eval()
        self.class_names = list(self.info["class_names"])
        if bf16 not in ("auto", True, False):
            raise ValueError(f"bf16 must be 'auto', True or False (got {bf16!r})")
        self.bf16 = bf16_available(self.device.type) if bf16 == "auto" else bool(bf16)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Model inputs, float32 (N,1,48,48) in [-1, 1] -> probabilities (N,C)."""
        import torch

        t = torch.from_numpy(x).to(self.device, memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            logits = self.model(t)
        return torch.softmax(logits.float(), dim=1).cpu().numpy()

    @property
    def threads(self) -> int:
        import torch

        return torch.get_num_threads()
