from pathlib import Path

import pytest

from pipeline.config import ConfigError, PipelineConfig, build, load_config
from pipeline.graph import plan_graph

ROOT = Path(__file__).resolve().parents[2]


def _write(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_shipped_configs_load_and_plan():
    for name in ("default.yaml", "two_hosts.yaml", "webcam.yaml"):
        cfg = load_config(ROOT / "configs" / name)
        plan = plan_graph(cfg)
        assert [s.name for s in plan.stages] == ["decode", "detect", "features", "fit", "publish"]
        if name == "two_hosts.yaml":  # the fit's queue binds on its own host
            assert plan.stages[3].host == "10.0.0.2"
            assert plan.stages[3].input.address == "tcp://10.0.0.2:5602"
            assert plan.stages[4].input.address == "tcp://10.0.0.1:5603"
    assert plan.live and plan.stages[1].input.policy == "latest"


@pytest.mark.parametrize(
    "text,key",
    [
        ("stream_id: a\nbogus: 1\n", "bogus"),
        ("transport:\n  queue_sise: 3\n", "transport.queue_sise"),
        ("transport:\n  queue_size: three\n", "transport.queue_size"),
        ("transport:\n  queue_size: 0\n", "transport.queue_size"),
        ("transport:\n  control_timeout_s: 0\n", "transport.control_timeout_s"),
        ("transport:\n  control_timeout_s: -1.5\n", "transport.control_timeout_s"),
        ("mode: fibers\n", "mode"),
        ("metrics:\n  interval_s: [1]\n", "metrics.interval_s"),
        ("stages:\n  - name: d\n    type: decode\n    colour: red\n", "stages[0].colour"),
        (
            "stages:\n  - name: d\n    type: decode\n    params: {sauce: x.mp4}\n",
            "stages[0].params.sauce",
        ),
        (
            "stages:\n  - name: d\n    type: decode\n    params: {realtime: 'yes'}\n",
            "stages[0].params.realtime",
        ),
        (
            "stages:\n  - {name: d, type: decode}\n  - {name: p, type: publish, params: "
            "{smoothing: {beta: fast}}}\n",
            "stages[1].params.smoothing.beta",
        ),
        ("stages:\n  - {name: d, type: decode}\n  - {name: x, type: nosuch}\n", "stages[1].type"),
    ],
)
def test_bad_config_rejected_naming_the_key(tmp_path, text, key):
    with pytest.raises(ConfigError) as info:
        plan_graph(load_config(_write(tmp_path, text)))
    assert key in str(info.value)


def test_chain_rules(tmp_path):
    with pytest.raises(ConfigError, match="first stage must be a source"):
        plan_graph(build(PipelineConfig, {"stages": [{"name": "p", "type": "publish"}]}))
    with pytest.raises(ConfigError, match="duplicate"):
        build(
            PipelineConfig,
            {"stages": [{"name": "a", "type": "decode"}, {"name": "a", "type": "publish"}]},
        )
    with pytest.raises(ConfigError, match="inproc only works"):
        plan_graph(
            build(
                PipelineConfig,
                {
                    "mode": "processes",
                    "transport": {"protocol": "inproc"},
                    "stages": [{"name": "d", "type": "decode"}],
                },
            )
        )


def test_policy_auto_and_override(tmp_path):
    base = {
        "stages": [
            {"name": "d", "type": "decode", "params": {"source": "x.mp4"}},
            {"name": "p", "type": "publish"},
        ]
    }
    assert plan_graph(build(PipelineConfig, base)).stages[1].input.policy == "block"
    base["stages"][0]["params"]["source"] = "rtsp://127.0.0.1/live"
    assert plan_graph(build(PipelineConfig, base)).stages[1].input.policy == "latest"
    base["stages"][1]["policy"] = "block"
    assert plan_graph(build(PipelineConfig, base)).stages[1].input.policy == "block"
    base["transport"] = {"protocol": "tcp"}
    assert plan_graph(build(PipelineConfig, base)).stages[1].input.address.startswith("tcp://")


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
