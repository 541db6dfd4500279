"""Training pieces end to end on a tiny network and a tiny batch built from the real body model."""

import math

import numpy as np
import pytest
import torch

from engines.body import BodyModel
from engines.model import load_model
from engines.train.config import TrainConfig, load_train_config
from engines.train.step import BATCH_KEYS, feature_camera
from engines.train.trainer import Trainer, collate

S = 64


class TinySet(torch.utils.data.Dataset):
    """Bodies at known poses in front of a crop camera; images are fixed noise per index."""

    def __init__(self, n, seed):
        self.n, self.seed = n, seed
        self.body = BodyModel.default()

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(self.seed * 1000 + i)
        go = torch.tensor([[math.pi, 0.0, 0.0]]) + 0.2 * torch.randn(1, 3, generator=g)
        pose = 0.2 * torch.randn(1, 69, generator=g)
        betas = torch.zeros(1, 10)
        transl = torch.tensor([[0.0, 0.3, 5.0]])
        with torch.no_grad():
            j3d = self.body(go, pose, betas, transl).joints[0]
        f = 120.0
        K = torch.tensor([[f, 0, (S - 1) / 2], [0, f, (S - 1) / 2], [0, 0, 1.0]])
        uv = (K @ (j3d / j3d[:, 2:]).T).T[:, :2]
        rng = np.random.default_rng(self.seed * 1000 + i)
        return {
            "image": rng.integers(0, 255, (S, S, 3), dtype=np.uint8),
            "K": K.numpy(),
            "global_orient": go[0].numpy(),
            "body_pose": pose[0].numpy(),
            "betas": betas[0].numpy(),
            "transl": transl[0].numpy(),
            "joints3d": j3d.numpy(),
            "joints2d": uv.numpy(),
            "part_map": np.zeros((S, S), np.int64),
            "occluder_mask": np.zeros((S, S), bool),
        }


def _cfg(tmp_path, **kw):
    d = dict(
        steps=30, batch_size=4, lr=3e-3, val_every=15, val_batches=1, checkpoint_every=15,
        log_every=5, out_dir=str(tmp_path / "run"), workers=0,
        featnet={"input_size": S, "width": 8, "feature_dim": 16, "head_channels": 16,
                 "smpl_channels": 4, "mlp_hidden": 16},
        nbv={"num_kernels": 200}, bank={"n_clutter": 64},
    )  # fmt: skip
    d.update(kw)
    return TrainConfig.from_dict(d)


def test_collate_stacks_every_key():
    batch = collate([TinySet(2, 0)[0], TinySet(2, 0)[1]])
    assert set(batch) == set(BATCH_KEYS)
    assert batch["image"].shape == (2, S, S, 3) and batch["image"].dtype == torch.uint8


def test_feature_camera_keeps_pixel_centres():
    K = torch.tensor([[[100.0, 0, 31.5], [0, 100.0, 31.5], [0, 0, 1]]])
    cam = feature_camera(K, 4, 64)
    assert cam.width == 16 and float(cam.cx[0]) == pytest.approx(7.5)
    assert float(cam.fx[0]) == pytest.approx(25.0)


@pytest.mark.slow
def test_overfit_tiny_batch_then_checkpoint_round_trip(tmp_path):
    ds = TinySet(4, 0)
    tr = Trainer(_cfg(tmp_path, steps=40), ds, ds)
    hist = tr.run(progress=False)
    assert len(hist) >= 2
    assert hist[-1]["total"] < hist[0]["total"]
    assert hist[-1]["val_mpjpe"] < 1000
    # checkpoint: the saved bundle reloads with identical weights and bank
    b = load_model(tr.last_path)
    for k, v in tr.net.state_dict().items():
        assert torch.equal(v, b.net.state_dict()[k]), k
    assert torch.equal(b.bank.rows, tr.bank.rows)
    assert b.metadata["step"] == 40 and b.metadata["body_model_hash"]
    # resume continues from the saved step
    tr2 = Trainer(_cfg(tmp_path, steps=45), ds, ds)
    assert tr2.resume()
    assert tr2.step_count == 40
    tr2.run(progress=False)
    assert tr2.step_count == 45
    # a shipped bundle (no optimiser state beside it) resumes with a fresh optimiser
    import shutil

    shipped = tmp_path / "shipped.safetensors"
    shutil.copy(tr.last_path, shipped)
    shutil.copy(tr.last_path.with_suffix(".json"), shipped.with_suffix(".json"))
    tr3 = Trainer(_cfg(tmp_path / "other", steps=46), ds, ds)
    assert tr3.resume(shipped)
    assert tr3.step_count == 45
    assert torch.equal(tr3.bank.rows, tr2.bank.rows)


def test_loss_decreases_when_overfitting(tmp_path):
    ds = TinySet(4, 1)
    tr = Trainer(_cfg(tmp_path), ds, ds)
    batch = collate([ds[i] for i in range(4)])
    from engines.train.step import step

    losses = []
    for _ in range(25):
        so = step(tr.net, tr.body, tr.nbv, tr.bank, batch, tr.weights)
        tr.opt.zero_grad()
        so.total.backward()
        tr.opt.step()
        losses.append(so.terms["total"])
    assert so.n_visible > 20
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])


def test_checkpoint_keeps_the_whole_history(tmp_path):
    ds = TinySet(2, 0)
    tr = Trainer(_cfg(tmp_path), ds, ds)
    tr.history = [{"step": i, "total": float(i)} for i in range(1, 121)]
    tr.save()
    again = Trainer(_cfg(tmp_path), ds, ds)
    assert again.resume()
    assert [r["step"] for r in again.history] == list(range(1, 121))


def test_config_rejects_unknown_and_wrong_types(tmp_path):
    with pytest.raises(ValueError, match="unknown key"):
        TrainConfig.from_dict({"stepz": 3})
    with pytest.raises(ValueError, match="'steps' must be int"):
        TrainConfig.from_dict({"steps": "3"})
    p = tmp_path / "c.yaml"
    p.write_text("lr: 0.001\nbatch_size: 2\n")
    assert load_train_config(p).batch_size == 2
    with pytest.raises(FileNotFoundError):
        load_train_config(tmp_path / "missing.yaml")
    with pytest.raises(ValueError, match="pool_slots"):
        TrainConfig.from_dict({"pool_slots": 0})
    with pytest.raises(ValueError, match="pool_min_weight"):
        TrainConfig.from_dict({"pool_min_weight": -0.5})


def test_cosine_learning_rate_schedule():
    from engines.train.config import TrainConfig, learning_rate

    cfg = TrainConfig(steps=100, lr=1e-3, lr_schedule="cosine", lr_min_factor=0.1)
    assert learning_rate(cfg, 0) == pytest.approx(1e-3)
    assert learning_rate(cfg, 50) == pytest.approx(0.55e-3)
    assert learning_rate(cfg, 100) == pytest.approx(1e-4)
    assert learning_rate(TrainConfig(lr=2e-3), 77) == 2e-3
    with pytest.raises(ValueError, match="lr_schedule"):
        TrainConfig(lr_schedule="step")


def test_warm_restart_schedule_starts_at_schedule_start_with_warmup():
    from engines.train.config import TrainConfig, learning_rate

    cfg = TrainConfig(steps=300, lr=1e-3, lr_schedule="cosine", lr_min_factor=0.1,
                      schedule_start=100, warmup_steps=10)  # fmt: skip
    assert learning_rate(cfg, 100) == pytest.approx(1e-4)  # first step of the warm-up
    assert learning_rate(cfg, 109) == pytest.approx(1e-3, rel=0.01)
    assert learning_rate(cfg, 200) == pytest.approx(0.55e-3)  # half way from 100 to 300
    assert learning_rate(cfg, 300) == pytest.approx(1e-4)
    const = TrainConfig(steps=50, lr=2e-3, warmup_steps=4)
    assert [learning_rate(const, i) for i in range(5)] == pytest.approx([5e-4, 1e-3, 1.5e-3,
                                                                        2e-3, 2e-3])  # fmt: skip
    for bad in ({"schedule_start": 50, "steps": 50}, {"warmup_steps": -1}, {"max_targets": -1}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            TrainConfig(**bad)


def test_channels_last_training_matches_contiguous(tmp_path):
    """The channels-last network computes the same losses and gradients as the NCHW one."""
    from engines.train.step import step

    ds = TinySet(2, 4)
    batch = collate([ds[i] for i in range(2)])
    runs = []
    for cl in (False, True):
        tr = Trainer(_cfg(tmp_path, channels_last=cl), ds, ds)
        assert tr.net.stem[0][0].weight.is_contiguous(memory_format=torch.channels_last) == cl
        so = step(tr.net, tr.body, tr.nbv, tr.bank, batch, tr.weights,
                  generator=torch.Generator().manual_seed(0))  # fmt: skip
        so.total.backward()
        runs.append((so, {n: p.grad.clone() for n, p in tr.net.named_parameters()}))
    (a, ga), (b, gb) = runs
    assert b.terms["total"] == pytest.approx(a.terms["total"], rel=1e-4)
    for n in ga:
        torch.testing.assert_close(gb[n], ga[n], rtol=1e-3, atol=1e-5, msg=n)
    state = Trainer(_cfg(tmp_path, channels_last=True), ds, ds).save()
    assert load_model(state).net.stem[0][0].weight.is_contiguous()  # written NCHW


def test_device_is_checked_and_never_falls_back(tmp_path):
    from engines.backends.base import DeviceUnavailableError
    from engines.train.trainer import resolve_device

    for bad in ("tpu", "cuda:x", "gpu"):
        with pytest.raises(ValueError, match="device must be"):
            TrainConfig(device=bad)
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("cuda:0" if torch.cuda.is_available() else "cpu").type in ("cpu", "cuda")
    if torch.cuda.is_available():
        pytest.skip("the unavailable-CUDA errors need a machine without CUDA")
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(DeviceUnavailableError, match="CUDA is not available"):
        resolve_device("cuda")
    ds = TinySet(4, 0)
    with pytest.raises(DeviceUnavailableError):
        Trainer(_cfg(tmp_path, device="cuda:1"), ds, ds)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_training_matches_cpu_and_its_checkpoints_resume_on_cpu(tmp_path):
    ds = TinySet(4, 2)
    batch = collate([ds[i] for i in range(4)])
    cpu = Trainer(_cfg(tmp_path / "cpu"), ds, ds)
    gpu = Trainer(_cfg(tmp_path / "gpu", device="cuda"), ds, ds)
    assert next(gpu.net.parameters()).is_cuda and gpu.bank.rows.is_cuda
    for _ in range(3):
        a, b = cpu.train_step(batch), gpu.train_step(batch)
        assert b.terms["total"] == pytest.approx(a.terms["total"], rel=2e-2)
        assert b.n_visible == a.n_visible
    assert gpu.validate()["val_mpjpe"] == pytest.approx(cpu.validate()["val_mpjpe"], rel=2e-2)
    gpu.save()
    again = Trainer(_cfg(tmp_path / "gpu"), ds, ds)  # on CPU, with the CUDA run's optimiser
    assert again.resume() and again.step_count == 3
    again.train_step(batch)
    for k, v in gpu.net.state_dict().items():
        torch.testing.assert_close(v.cpu(), load_model(gpu.last_path).net.state_dict()[k])
