import torch

from engines.body import BodyModel
from engines.evaluation.features import kernel_top1_eval

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
