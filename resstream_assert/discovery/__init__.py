"""Find the residual blocks of a model: torch graphs (torch.fx) and ONNX graphs."""

from resstream_assert.discovery.residual_map import SITES, Block, ResidualMap

__all__ = ["SITES", "Block", "ResidualMap", "discover"]


def discover(model, input_size: int | None = None) -> ResidualMap:
    """Return the :class:`ResidualMap` of a loaded model (torch or ONNX).

    Example:
        >>> from resstream_assert import load_model
        >>> rmap = discover(load_model("torchvision:resnet18"))  # doctest: +SKIP
        >>> len(rmap)  # doctest: +SKIP
        8
    """
    if getattr(model, "backend", "torch") == "onnx":
        from resstream_assert.discovery.onnx_graph import discover_onnx

        return discover_onnx(model, input_size)
    from resstream_assert.discovery.torch_graph import discover_torch

    return discover_torch(model, input_size)
