"""mld's dropout: torch's semantics, with masks drawn from torch's generator alone (never the
vendor-dependent `bernoulli_` kernel) in every head that drops units."""
from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from mld.heads import create_head
from mld.heads.dropout import Dropout

# Kernels whose CPU random numbers depend on the processor's vendor (MKL's stream on Intel).
VENDOR_DEPENDENT = {"aten.bernoulli_.float", "aten.bernoulli.p", "aten.native_dropout.default"}


class OpNames(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.add(str(func))
        return func(*args, **(kwargs or {}))


def test_dropout_zeroes_about_p_scales_the_rest_and_passes_gradients_through_the_mask():
    torch.manual_seed(0)
    layer = Dropout(0.25)
    x = torch.rand(200, 500) + 0.5
    x.requires_grad_(True)
    out = layer(x)
    kept = out != 0
    assert kept.float().mean().item() == pytest.approx(0.75, abs=0.01)
    assert torch.allclose(out[kept], x[kept] / 0.75)
    out.sum().backward()
    assert torch.allclose(x.grad, kept.float() / 0.75)
    layer.eval()
    assert layer(x) is x
    with pytest.raises(ValueError, match="dropout=1.0"):
        Dropout(1.0)


def test_the_mask_is_a_function_of_the_seed_alone():
    layer = Dropout(0.1)
    x = torch.ones(4, 80, 48)
    torch.manual_seed(3)
    first = layer(x)
    torch.manual_seed(3)
    assert torch.equal(layer(x), first)
    torch.manual_seed(4)
    assert not torch.equal(layer(x), first)


@pytest.mark.parametrize("name,options", [
    ("ml_decoder", {"decoder_dim": 16, "num_heads": 4, "ff_dim": 24}),
    ("transformer_decoder", {"decoder_dim": 16, "num_heads": 4, "ff_dim": 24}),
    ("hsvlt", {"embed_dim": 8, "num_blocks": 1, "num_heads": 2, "num_scales": 2, "word_vectors": torch.randn(5, 10)}),
])
def test_no_head_draws_its_dropout_masks_from_a_vendor_dependent_kernel(name, options):
    channels = [6, 6] if name == "hsvlt" else 6
    head = create_head(name, channels, 5, dropout=0.1, **options)
    features = [torch.randn(2, 6, 4, 4), torch.randn(2, 6, 2, 2)] if name == "hsvlt" else torch.randn(2, 6, 4, 4)
    with OpNames() as ops:
        head.train()(features).sum().backward()
    assert "aten.uniform_.default" in ops.names      # it did drop units
    assert not ops.names & VENDOR_DEPENDENT
