import pytest
import torch

from engines.body import BodyModel
from engines.evaluation.features import kernel_top1_eval, part_eval

from ._helpers import tiny_bundle


def test_kernel_top1_is_a_fraction_and_rewards_matching_bank_rows():
    body = BodyModel.default()
    bundle = tiny_bundle(body)
    low = kernel_top1_eval(bundle, n=4, batch=4)
    assert 0.0 <= low <= 1.0
    # a bank made of the features the network actually produces on these images scores higher
    from engines.synth.dataset import SynthConfig, SynthDataset
    from engines.train.regression import RegressionWeights
    from engines.train.step import step
    from engines.train.trainer import collate

    cfg = SynthConfig(crop_size=bundle.net.config.input_size, occlusion_prob=0.0,
                      truncation_prob=0.0)  # fmt: skip
    batch = collate([SynthDataset(cfg, "eval")[i] for i in range(4)])
    nbv = bundle.build_nbv(body)
    bundle.bank.config = type(bundle.bank.config)(
        momentum=0.0, n_clutter=bundle.bank.config.n_clutter
    )
    with torch.no_grad():
        step(bundle.net, body, nbv, bundle.bank, batch, RegressionWeights(), update_bank=True)
    assert kernel_top1_eval(bundle, n=4, batch=4) > low


def test_part_eval_counts_hits_and_left_right_swaps():
    """A part head rigged to say "left hip" everywhere hits the left hip's pixels and swaps
    the right hip's: both shares follow from the images' true part maps."""
    from engines.synth.dataset import SynthConfig, SynthDataset

    bundle = tiny_bundle(BodyModel.default())
    head = bundle.net.part_head
    with torch.no_grad():
        head.weight.zero_()
        head.bias.fill_(-10.0)
        head.bias[2] = 10.0  # label 2 = SMPL joint 1 (left hip); its mirror is label 3
    r = part_eval(bundle, n=4, batch=2)
    cfg = SynthConfig(crop_size=bundle.net.config.input_size, occlusion_prob=0.0,
                      truncation_prob=0.0)  # fmt: skip
    ds = SynthDataset(cfg, "eval")
    stride = 4
    truth = torch.stack([torch.as_tensor(ds[i]["part_map"]) for i in range(4)]).long()
    truth = truth[:, stride // 2 :: stride, stride // 2 :: stride]
    on = truth > 0
    centre = (truth == 1) | (truth == 4) | (truth == 7) | (truth == 10) | (truth == 13)
    centre |= truth == 16  # pelvis, spines, neck, head: their own mirrors
    side = on & ~centre
    assert r["part_top1"] == pytest.approx(float((truth == 2).sum() / on.sum()))
    assert r["part_lr_swap"] == pytest.approx(float((truth == 3).sum() / side.sum()))
    assert 0 < r["part_lr_swap"] < 1
    # with occluders: only the body pixels no occluder covers count
    r = part_eval(bundle, n=4, batch=2, occlusion_prob=1.0)
    cfg = SynthConfig(crop_size=bundle.net.config.input_size, occlusion_prob=1.0,
                      truncation_prob=0.0)  # fmt: skip
    ds = SynthDataset(cfg, "eval")
    items = [ds[i] for i in range(4)]
    truth = torch.stack([torch.as_tensor(x["part_map"]) for x in items]).long()
    hidden = torch.stack([torch.as_tensor(x["occluder_mask"]) for x in items]).bool()
    sub = (slice(None), slice(stride // 2, None, stride), slice(stride // 2, None, stride))
    truth, hidden = truth[sub], hidden[sub]
    assert hidden.any()
    on = (truth > 0) & ~hidden
    assert r["part_top1"] == pytest.approx(float(((truth == 2) & on).sum() / on.sum()))
    with pytest.raises(ValueError):
        part_eval(bundle, n=2, split="train")
