import pytest
import torch

from engines.render import Camera, camera_rays


def test_rays_go_through_integer_pixel_centres():
    cam = Camera(100.0, 120.0, 4.5, 3.0, 10, 8)
    r = camera_rays(cam, torch.float64)
    assert r.shape == (1, 8, 10, 3)
    torch.testing.assert_close(r.norm(dim=-1), torch.ones(1, 8, 10, dtype=torch.float64))
    # projecting each ray gives back its pixel centre (u, v) = (j, i)
    u = 100.0 * r[..., 0] / r[..., 2] + 4.5
    v = 120.0 * r[..., 1] / r[..., 2] + 3.0
    jj, ii = torch.meshgrid(torch.arange(10.0), torch.arange(8.0), indexing="xy")
    torch.testing.assert_close(u[0], jj.double())
    torch.testing.assert_close(v[0], ii.double())
    # image y is down: rows below the principal point look towards +y
    assert r[0, 7, 0, 1] > 0 and r[0, 0, 0, 1] < 0


def test_batched_camera_and_from_matrix():
    K = torch.tensor(
        [
            [[100.0, 0, 4.0], [0, 110.0, 3.0], [0, 0, 1]],
            [[200.0, 0, 5.0], [0, 210.0, 2.0], [0, 0, 1]],
        ]
    )
    cam = Camera.from_matrix(K, 10, 8)
    assert cam.batch == 2
    intr = cam.intrinsics()
    torch.testing.assert_close(
        intr, torch.tensor([[100.0, 110, 4, 3], [200.0, 210, 5, 2]], dtype=torch.float64)
    )
    assert camera_rays(cam).shape == (2, 8, 10, 3)
    shared = Camera.from_matrix(K[0], 10, 8)
    assert shared.batch is None and shared.fx == 100.0


@pytest.mark.parametrize(
    "args",
    [
        (100.0, 100.0, 4.0, 4.0, 0, 8),
        (100.0, 100.0, 4.0, 4.0, 8, 8.0),
        (-100.0, 100.0, 4.0, 4.0, 8, 8),
        (100.0, float("nan"), 4.0, 4.0, 8, 8),
        (torch.ones(2), torch.ones(3), 4.0, 4.0, 8, 8),
        (torch.ones(2, 1), 1.0, 4.0, 4.0, 8, 8),
    ],
)
def test_bad_cameras_raise(args):
    with pytest.raises(ValueError, match="Camera"):
        Camera(*args)


def test_bad_intrinsic_matrix_raises():
    with pytest.raises(ValueError, match="K"):
        Camera.from_matrix(torch.eye(4), 8, 8)
