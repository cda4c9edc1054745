"""The loop's shortcuts are the same functions: the denoiser with its context bound, forward kinematics."""
import pytest
import torch

from backend.body.body_model import BodyModel, forward_kinematics
from backend.engine.conditioned import ConditionedDenoiser, condition
from backend.models.denoiser import Denoiser
from backend.rotations import axis_angle_to_matrix


@pytest.mark.parametrize("parameterisation", ["eps", "v"])
def test_the_bound_denoiser_equals_the_network(parameterisation):
    torch.manual_seed(0)
    model = Denoiser(16, hidden=32, blocks=2, parameterisation=parameterisation).eval()
    with torch.no_grad():   # LayerNorm gains and biases away from their 1 / 0 start, so that folding them matters
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x, c = torch.randn(5, 144), 3 + 2 * torch.randn(5, 16)
    bound = condition(model, c)
    assert isinstance(bound, ConditionedDenoiser)
    with torch.no_grad():
        for t in (torch.tensor(0), torch.tensor(37), torch.tensor([3, 90, 90, 5, 999])):
            assert torch.allclose(bound(x, t), model(x, t, c), atol=1e-5, rtol=1e-5)
        model.out.bias.add_(1.0)          # a changed weight is seen by the next binding
        assert torch.allclose(condition(model, c)(x, torch.tensor(37)), model(x, torch.tensor(37), c), atol=1e-5)


def test_other_denoisers_are_called_as_they_are():
    calls = []
    eps = lambda x, t, c: calls.append(c) or torch.zeros_like(x)
    c = torch.ones(2, 3)
    condition(eps, c)(torch.zeros(2, 144), torch.tensor(1))
    assert calls[0] is c


def test_forward_kinematics_equals_the_joint_by_joint_chain():
    body = BodyModel.load()
    torch.manual_seed(1)
    R = axis_angle_to_matrix(0.5 * torch.randn(3, 24, 3))
    rest = body.shaped(torch.randn(3, 10)).rest_joints
    world_R, joints = forward_kinematics(R, rest, body.parents, body.levels)
    for j, p in enumerate(body.parents):
        want_R = R[:, j] if p < 0 else world_R[:, p] @ R[:, j]
        want_p = rest[:, j] if p < 0 else joints[:, p] + (world_R[:, p] @ (rest[:, j] - rest[:, p])[..., None])[..., 0]
        assert torch.allclose(world_R[:, j], want_R, atol=1e-6) and torch.allclose(joints[:, j], want_p, atol=1e-6)
