"""S3LightningCheckpoint with a real Lightning Trainer (CPU) and a real moto server."""

from __future__ import annotations

import io
import pickle
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

lightning = pytest.importorskip("lightning")

from lightning.pytorch import LightningModule, Trainer  # noqa: E402
from lightning.pytorch.plugins.io import AsyncCheckpointIO  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from s3torch_async import S3ClientConfig, S3Exception  # noqa: E402
from s3torch_async._core._planning import MiB  # noqa: E402
from s3torch_async.lightning import S3LightningCheckpoint  # noqa: E402
from tests._faultproxy import FaultProxy  # noqa: E402

pytestmark = [
    pytest.mark.torch,
    # Lightning's advice for real runs (num_workers, logging interval...), not errors.
    pytest.mark.filterwarnings("ignore::UserWarning:lightning"),
    # Lightning 2.6 still uses torch's deprecated pytree LeafSpec (torch 2.13 warns).
    pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning"),
    pytest.mark.filterwarnings("ignore:.*does not have many workers.*"),
    pytest.mark.filterwarnings("ignore:.*log_every_n_steps.*"),
]

REGION = "us-east-1"
CONFIG = S3ClientConfig(part_size=5 * MiB, max_attempts=1)


class TinyModel(LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1)
        )

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return torch.nn.functional.mse_loss(self.net(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self) -> DataLoader[Any]:
        gen = torch.Generator().manual_seed(0)
        data = TensorDataset(
            torch.randn(32, 4, generator=gen), torch.randn(32, 1, generator=gen)
        )
        return DataLoader(data, batch_size=8)


class NotAWeight:
    """A pickled object that ``torch.load(weights_only=True)`` refuses."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NotAWeight)


def trainer(tmp_path: Path, plugin: Any, max_steps: int) -> Trainer:
    return Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=max_steps,
        plugins=[plugin],
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        logger=False,
        default_root_dir=tmp_path,
    )


@pytest.fixture
def plugin(endpoint: str) -> S3LightningCheckpoint:
    return S3LightningCheckpoint(REGION, s3client_config=CONFIG, endpoint=endpoint)


@pytest.fixture
def proxy(moto_endpoint: str) -> Iterator[FaultProxy]:
    with FaultProxy(moto_endpoint) as p:
        yield p


def params(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def test_constructor_argument_order_and_attributes(endpoint):
    cp = S3LightningCheckpoint("eu-west-1", CONFIG, endpoint)
    assert cp.region == "eu-west-1"
    assert cp._client.s3client_config is CONFIG
    assert cp._client.endpoint == endpoint


def test_user_agent_names_lightning_version(proxy, bucket):
    cp = S3LightningCheckpoint(REGION, s3client_config=CONFIG, endpoint=proxy.url)
    suffix = f" (lightning; {lightning.__version__})"
    assert cp._client.user_agent_prefix.endswith(suffix)
    cp.save_checkpoint({"a": 1}, f"s3://{bucket}/ua.ckpt")
    agents = [h.get("User-Agent", "") for _, _, h in proxy.requests]
    assert agents
    assert all(f"lightning; {lightning.__version__}" in a for a in agents)


@pytest.mark.parametrize("path", [Path("s3://bucket/key"), ["s3://bucket/key"], None])
def test_non_string_path_raises_type_error(plugin, path):
    message = (
        f"{type(path).__name__!r} is not a supported type for 'path'. "
        "Must be a string formatted as an S3 uri."
    )
    for call in (
        lambda: plugin.save_checkpoint({}, path),
        lambda: plugin.load_checkpoint(path),
        lambda: plugin.remove_checkpoint(path),
    ):
        with pytest.raises(TypeError) as info:
            call()
        assert str(info.value) == message


def test_non_s3_path_raises_value_error(plugin):
    with pytest.raises(ValueError, match=r"^Only s3:// URIs are supported$"):
        plugin.save_checkpoint({}, "/tmp/local.ckpt")


def test_save_checkpoint_writes_torch_save_format(plugin, bucket, boto_s3):
    state = {"weights": torch.arange(10.0), "epoch": 3}
    plugin.save_checkpoint(state, f"s3://{bucket}/a.ckpt", storage_options={"x": 1})
    body = boto_s3.get_object(Bucket=bucket, Key="a.ckpt")["Body"].read()
    loaded = torch.load(io.BytesIO(body), weights_only=True)
    assert torch.equal(loaded["weights"], torch.arange(10.0))
    assert loaded["epoch"] == 3


def test_save_and_load_checkpoint(plugin, bucket):
    state = {"weights": torch.arange(10.0), "epoch": 3}
    plugin.save_checkpoint(state, f"s3://{bucket}/a.ckpt")
    loaded = plugin.load_checkpoint(f"s3://{bucket}/a.ckpt", map_location="cpu")
    assert torch.equal(loaded["weights"], torch.arange(10.0))
    assert loaded["epoch"] == 3


def test_load_missing_checkpoint_raises(plugin, bucket):
    with pytest.raises(
        S3Exception, match=r"^Service error: The key does not exist(\n|$)"
    ):
        plugin.load_checkpoint(f"s3://{bucket}/missing.ckpt")


@pytest.mark.parametrize(
    ("version", "weights_only", "loads"),
    [
        ("2.5.1", None, True),  # Lightning < 2.6: None means weights_only=False
        (
            "2.6.0",
            None,
            False,
        ),  # Lightning >= 2.6: torch decides (True since torch 2.6)
        ("2.6.0", False, True),
        ("2.5.1", True, False),
    ],
)
def test_weights_only_default_follows_lightning_version(
    plugin, bucket, monkeypatch, version, weights_only, loads
):
    plugin.save_checkpoint({"extra": NotAWeight()}, f"s3://{bucket}/x.ckpt")
    monkeypatch.setattr(lightning, "__version__", version)
    if loads:
        loaded = plugin.load_checkpoint(
            f"s3://{bucket}/x.ckpt", weights_only=weights_only
        )
        assert loaded == {"extra": NotAWeight()}
    else:
        with pytest.raises(pickle.UnpicklingError):
            plugin.load_checkpoint(f"s3://{bucket}/x.ckpt", weights_only=weights_only)


def test_remove_checkpoint(plugin, bucket, boto_s3, put):
    put("old.ckpt", b"x")
    plugin.remove_checkpoint(f"s3://{bucket}/old.ckpt")
    assert boto_s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    plugin.remove_checkpoint(f"s3://{bucket}/old.ckpt")  # missing key: fine


def test_teardown_is_a_noop(plugin):
    plugin.teardown()
    plugin.teardown()


def test_trainer_saves_to_s3_and_resumes(plugin, bucket, tmp_path):
    uri = f"s3://{bucket}/run/step3.ckpt"
    model = TinyModel()
    first = trainer(tmp_path, plugin, max_steps=3)
    first.fit(model)
    first.save_checkpoint(uri)
    saved = params(model)

    torch.manual_seed(123)
    resumed_model = TinyModel()
    assert not all(torch.equal(a, b) for a, b in zip(params(resumed_model), saved))
    second = trainer(tmp_path, plugin, max_steps=3)  # already done: restore only
    second.fit(resumed_model, ckpt_path=uri)
    assert second.global_step == 3
    assert all(torch.equal(a, b) for a, b in zip(params(resumed_model), saved))

    third = trainer(tmp_path, plugin, max_steps=5)  # and training continues from there
    third.fit(TinyModel(), ckpt_path=uri)
    assert third.global_step == 5


def test_works_under_async_checkpoint_io(endpoint, bucket, boto_s3, tmp_path):
    async_io = AsyncCheckpointIO(
        S3LightningCheckpoint(REGION, s3client_config=CONFIG, endpoint=endpoint)
    )
    model = TinyModel()
    t = trainer(tmp_path, async_io, max_steps=2)
    t.fit(model)
    uri = f"s3://{bucket}/async.ckpt"
    t.save_checkpoint(uri)
    async_io.teardown()  # waits for the background save
    body = boto_s3.get_object(Bucket=bucket, Key="async.ckpt")["Body"].read()
    state = torch.load(io.BytesIO(body), weights_only=False)
    assert state["global_step"] == 2
    for name, value in model.state_dict().items():
        assert torch.equal(state["state_dict"][name], value)


def test_missing_lightning_raises_module_not_found():
    script = textwrap.dedent(
        """
        import importlib.abc, sys

        class HideLightning(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "lightning" or name.startswith("lightning."):
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)
                return None

        sys.meta_path.insert(0, HideLightning())
        try:
            import s3torch_async.lightning
        except ModuleNotFoundError as exc:
            print(repr(str(exc)))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == repr("No module named 'lightning'")
