"""The body-model layer: the free SMPL-format model and a user's SMPL file behind one interface."""
import numpy as np
import pytest
import torch

from backend.body import free_model
from backend.body.body_model import BodyModel, pose_to_rotmats
from backend.body.example_poses import example_pose
from backend.contract.layout import COCO17_NAMES, SMPL_JOINT_NAMES, SMPL_PARENTS
from backend.rotations import axis_angle_to_matrix
from tests.support.smpl_standin import write_standin_smpl

J = {name: i for i, name in enumerate(SMPL_JOINT_NAMES)}


@pytest.fixture(scope="module")
def free64():
    return BodyModel.load(None, dtype=torch.float64)


@pytest.fixture(scope="module")
def standin64(tmp_path_factory):
    path = tmp_path_factory.mktemp("smpl") / "SMPL_NEUTRAL.pkl"
    write_standin_smpl(path)
    return BodyModel.load(path, dtype=torch.float64)


def _random_batch(n, seed, dtype=torch.float64, scale=0.5):
    g = torch.Generator().manual_seed(seed)
    R = axis_angle_to_matrix(scale * torch.randn(n, 24, 3, generator=g, dtype=dtype))
    return R, torch.randn(n, 10, generator=g, dtype=dtype), torch.randn(n, 3, generator=g, dtype=dtype)


def _posed(model, pose_name):
    R = axis_angle_to_matrix(example_pose(pose_name, model.dtype))[None]
    out = model(R, torch.zeros(10, dtype=model.dtype))
    return out.joints[0].numpy(), out.vertices[0].numpy()


# -- the committed file ---------------------------------------------------------------------------

def test_free_model_file_layout():
    data = free_model.load_free_model()
    v = data["v_template"].shape[0]
    assert data["f"].shape[1] == 3 and data["f"].max() < v
    assert data["shapedirs"].shape == (v, 3, 10)
    assert data["posedirs"].shape == (v, 3, 207) and not data["posedirs"].any()
    assert data["J_regressor"].shape == (24, v)
    np.testing.assert_allclose(data["J_regressor"].sum(1), 1.0, atol=1e-5)
    assert (data["J_regressor"] != 0).sum() < 0.05 * data["J_regressor"].size  # sparse
    np.testing.assert_allclose(data["weights"].sum(1), 1.0, atol=1e-5)
    assert data["weights"].shape == (v, 24) and data["weights"].min() >= 0
    assert list(data["kintree_table"][0, 1:]) == list(SMPL_PARENTS[1:])
    assert tuple(data["keypoint_names"][:17]) == COCO17_NAMES
    assert free_model.FREE_MODEL_PATH.stat().st_size < 5 * 2**20


def test_plain_smplx_loads_the_free_model(tmp_path, free64):
    import smplx

    pkl = free_model.write_smpl_pickle(tmp_path)
    plain = smplx.SMPL(model_path=str(tmp_path), gender="neutral", dtype=torch.float64,
                       vertex_ids=free_model.extra_vertex_ids(free_model.load_free_model()))
    R, betas, transl = _random_batch(3, seed=1)
    out = plain(betas=betas, global_orient=R[:, :1], body_pose=R[:, 1:], transl=transl, pose2rot=False)
    ours = free64(R, betas, transl)
    assert pkl.name == "SMPL_NEUTRAL.pkl"
    assert out.joints.shape[1] == 24 + 21  # smplx's extra joints come from our own vertex picks
    np.testing.assert_allclose(out.vertices.numpy(), ours.vertices.numpy(), atol=1e-6)
    np.testing.assert_allclose(out.joints[:, :24].numpy(), ours.joints.numpy(), atol=1e-6)


# -- rest pose sanity -----------------------------------------------------------------------------

def test_t_pose_height_ground_and_symmetry(free64):
    joints, verts = _posed(free64, "t_pose")
    height = verts[:, 1].max() - verts[:, 1].min()
    assert 1.5 < height < 1.9
    # Y up, facing +Z, left = +X, arms horizontal (T-pose).
    assert joints[J["head"], 1] > joints[J["pelvis"], 1] > joints[J["left_knee"], 1]
    assert joints[J["left_hip"], 0] > 0 > joints[J["right_hip"], 0]
    for side in ("left", "right"):
        arm = joints[[J[f"{side}_shoulder"], J[f"{side}_elbow"], J[f"{side}_wrist"]]]
        assert np.ptp(arm[:, 1]) < 0.03 and np.ptp(arm[:, 2]) < 0.03
    nose = free64(axis_angle_to_matrix(example_pose("t_pose", torch.float64))[None],
                  torch.zeros(10, dtype=torch.float64)).keypoints[0, 0].numpy()
    assert nose[2] > joints[J["head"], 2]  # the face looks along +Z
    # Left/right symmetric within 1 cm: joints and the mirrored mesh.
    mirror = np.array([-1.0, 1.0, 1.0])
    for name in SMPL_JOINT_NAMES:
        if name.startswith("left_"):
            other = joints[J["right_" + name[5:]]] * mirror
            assert np.linalg.norm(joints[J[name]] - other) < 0.01, name
    from scipy.spatial import cKDTree
    d, _ = cKDTree(verts).query(verts * mirror)
    assert d.max() < 0.01
    # Feet on the ground: the lowest points of the mesh are both soles, at the same height.
    weights = free_model.load_free_model()["weights"]
    foot = weights[:, [J["left_ankle"], J["right_ankle"], J["left_foot"], J["right_foot"]]].sum(1) > 0.5
    lowest = np.argsort(verts[:, 1])[:50]
    assert foot[lowest].all()
    left, right = verts[foot & (verts[:, 0] > 0), 1].min(), verts[foot & (verts[:, 0] < 0), 1].min()
    assert abs(left - right) < 0.005 and abs(verts[:, 1].min() - min(left, right)) < 1e-9


def _winding_number(points, verts, faces):
    """Generalised winding number of each point w.r.t. a triangle mesh (1 inside, 0 outside)."""
    tri = verts[faces][None] - points[:, None, None]        # (P,F,3,3)
    a, b, c = tri[:, :, 0], tri[:, :, 1], tri[:, :, 2]
    la, lb, lc = (np.linalg.norm(x, axis=-1) for x in (a, b, c))
    det = np.einsum("pfi,pfi->pf", a, np.cross(b, c))
    den = la * lb * lc + np.einsum("pfi,pfi->pf", a, b) * lc + np.einsum("pfi,pfi->pf", b, c) * la \
        + np.einsum("pfi,pfi->pf", c, a) * lb
    return np.arctan2(det, den).sum(1) / (2 * np.pi)


def test_joints_inside_the_mesh(free64):
    for pose in ("t_pose", "squat"):
        joints, verts = _posed(free64, pose)
        w = _winding_number(joints, verts, free64.faces)
        assert (np.abs(w) > 0.5).all(), (pose, [SMPL_JOINT_NAMES[i] for i in np.nonzero(np.abs(w) <= 0.5)[0]])


def test_known_poses_are_anatomical(free64):
    joints, _ = _posed(free64, "arms_down")
    for side in ("left", "right"):
        assert joints[J[f"{side}_elbow"], 1] < joints[J[f"{side}_shoulder"], 1] - 0.15
        assert joints[J[f"{side}_wrist"], 1] < joints[J[f"{side}_elbow"], 1] - 0.1
    joints, _ = _posed(free64, "squat")
    for side in ("left", "right"):
        knee, hip, ankle = joints[J[f"{side}_knee"]], joints[J[f"{side}_hip"]], joints[J[f"{side}_ankle"]]
        assert knee[2] > hip[2] + 0.25          # thighs come forward
        assert abs(knee[1] - hip[1]) < 0.15     # roughly horizontal
        assert ankle[1] < knee[1] - 0.25        # shins go down
    # Betas change the body but not the joint layout's semantics; shape is linear.
    R = axis_angle_to_matrix(example_pose("t_pose", torch.float64))[None]
    tall = free64(R, torch.tensor([[3.0] + [0.0] * 9], dtype=torch.float64)).vertices[0]
    short = free64(R, torch.tensor([[-3.0] + [0.0] * 9], dtype=torch.float64)).vertices[0]
    assert np.ptp(tall[:, 1].numpy()) != pytest.approx(np.ptp(short[:, 1].numpy()), abs=0.02)


# -- user SMPL through the same interface ---------------------------------------------------------

def test_user_smpl_standin_loads_and_gives_coco(standin64):
    R, betas, transl = _random_batch(4, seed=2)
    out = standin64(R, betas, transl)
    assert out.joints.shape == (4, 24, 3) and out.keypoints.shape == (4, 17, 3)
    assert out.vertices.shape == (4, 6890, 3)
    # Body keypoints are SMPL joints; the nose is SMPL's nose vertex.
    np.testing.assert_allclose(out.keypoints[:, 5].numpy(), out.joints[:, J["left_shoulder"]].numpy())
    np.testing.assert_allclose(out.keypoints[:, 0].numpy(), out.vertices[:, 332].numpy())
    assert standin64.has_pose_correctives


@pytest.mark.parametrize("which", ["free64", "standin64"])
def test_fast_path_equals_full_path(which, request):
    model = request.getfixturevalue(which)
    R, betas, transl = _random_batch(16, seed=3)
    full, fast = model(R, betas, transl), model.joints_fast(R, betas, transl)
    assert (full.joints - fast.joints).abs().max() < 1e-5
    assert (full.keypoints - fast.keypoints).abs().max() < 1e-5


def test_float32_fast_path_close_to_float64(free64):
    model32 = BodyModel.load(None, dtype=torch.float32)
    R, betas, transl = _random_batch(8, seed=4)
    a = free64.joints_fast(R, betas, transl).keypoints
    b = model32.joints_fast(R.float(), betas.float(), transl.float()).keypoints
    assert (a.float() - b).abs().max() < 1e-5


@pytest.mark.parametrize("path", ["fast", "full"])
def test_gradients_flow_from_keypoints_to_parameters(free64, path):
    g = torch.Generator().manual_seed(5)
    aa = (0.3 * torch.randn(2, 24, 3, generator=g, dtype=torch.float64)).requires_grad_()
    betas = torch.zeros(2, 10, dtype=torch.float64, requires_grad=True)
    transl = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    R = pose_to_rotmats(aa[:, 0], aa[:, 1:].reshape(2, 69))
    out = free64.joints_fast(R, betas, transl) if path == "fast" else free64(R, betas, transl)
    out.keypoints[:, 9].sum().backward()  # left wrist
    assert aa.grad[:, J["left_elbow"]].abs().sum() > 0 and aa.grad[:, J["left_shoulder"]].abs().sum() > 0
    assert aa.grad[:, J["right_knee"]].abs().sum() == 0  # does not move the left wrist
    assert betas.grad.abs().sum() > 0
    np.testing.assert_allclose(transl.grad.numpy(), np.ones((2, 3)), atol=1e-9)


def test_fast_path_gradient_matches_finite_differences(free64):
    R, betas, transl = _random_batch(1, seed=6)
    aa = torch.zeros(1, 24, 3, dtype=torch.float64, requires_grad=True)

    def f(x):
        return free64.joints_fast(axis_angle_to_matrix(x) @ R, betas, transl).keypoints.sum()

    assert torch.autograd.gradcheck(f, (aa,), eps=1e-6, atol=1e-5)


@pytest.mark.slow
def test_regenerating_the_free_model_gives_the_committed_arrays():
    from lab.body import free_model_build

    fresh = free_model.stored_arrays(free_model_build.build())
    committed = free_model.stored_arrays(free_model.load_free_model())
    for key in fresh:
        assert fresh[key].shape == committed[key].shape, key
        np.testing.assert_allclose(fresh[key], committed[key], rtol=0, atol=1e-6, err_msg=key)
