"""bench.conv_relu: the fx rewrite finds every convolution -> ReLU pair and, off CUDA, leaves
the outputs exactly as they were. (Its timing needs CUDA: gpu_suite runs it.)"""

from __future__ import annotations

import pytest
import torch
from torch import fx, nn

from selecsls.tools.bench.conv_relu import ConvReLU, fuse_conv_relu, main
from selecsls.tools.bench.models import fold_bn, resolve_model


def _first(out):
    return out if isinstance(out, torch.Tensor) else next(iter(out.values()))


@pytest.mark.parametrize(("name", "pairs"), [("selecsls42b", 41), ("resnet50", 33)])
def test_every_conv_relu_pair_is_fused_and_outputs_are_unchanged(name, pairs):
    torch.manual_seed(0)
    model, _ = fold_bn(resolve_model(name).build().eval())
    fused, count = fuse_conv_relu(model)
    assert count == pairs
    assert sum(isinstance(m, ConvReLU) for m in fused.modules()) == pairs
    modules = dict(fused.named_modules())
    for node in fused.graph.nodes:  # no ReLU is left reading a plain convolution
        if node.op == "call_module" and isinstance(modules[node.target], nn.ReLU):
            source = node.args[0]
            assert not (source.op == "call_module" and type(modules[source.target]) is nn.Conv2d)
    images = torch.randn(2, 3, 64, 96)
    with torch.inference_mode():
        assert torch.equal(_first(model(images)), _first(fused(images)))
    assert isinstance(fused, fx.GraphModule)


def test_a_relu_with_other_users_is_left_alone():
    class Branch(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x):
            y = self.conv(x)
            return torch.relu(y) + y  # the convolution's output is needed unrectified

    fused, count = fuse_conv_relu(Branch().eval())
    assert count == 0 and not any(isinstance(m, ConvReLU) for m in fused.modules())


def test_without_cuda_it_says_so(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit):
        main(["--models", "selecsls42b"])
    assert "needs a CUDA device" in capsys.readouterr().err
