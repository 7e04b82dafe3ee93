"""The start-up shortcuts of botocore's data loader give botocore's own answers."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from botocore.exceptions import UnknownServiceError
from botocore.loaders import Loader

from s3torch_async._core._botostart import _create_loader


@pytest.fixture(scope="module")
def pair() -> tuple[Loader, Loader]:
    return Loader(), _create_loader(None)


@pytest.mark.parametrize("type_name", ["service-2", "endpoint-rule-set-1"])
def test_s3_models_are_equal_to_botocores(pair, type_name):
    stock, fast = pair
    ours = fast.load_service_model("s3", type_name)
    assert type(ours) is dict
    assert ours == stock.load_service_model("s3", type_name)
    assert list(ours) == list(stock.load_service_model("s3", type_name))  # order kept


@pytest.mark.parametrize("name", ["endpoints", "partitions", "_retry"])
def test_data_files_are_equal_to_botocores(pair, name):
    stock, fast = pair
    assert fast.load_data(name) == stock.load_data(name)


def test_service_list_answers_membership_and_full_listing(pair):
    stock, fast = pair
    services = fast.list_available_services("service-2")
    assert "s3" in services
    assert "sts" in services
    assert "no-such-service" not in services
    assert 42 not in services
    assert list(services) == stock.list_available_services("service-2")
    assert len(services) == len(stock.list_available_services("service-2"))


def test_unknown_service_is_still_refused(pair):
    _, fast = pair
    with pytest.raises(UnknownServiceError, match="no-such-service"):
        fast.load_service_model("no-such-service", "service-2")


def test_data_path_adds_a_custom_service(tmp_path: Path):
    model = {"version": "2.0", "metadata": {"apiVersion": "2020-01-01"}, "shapes": {}}
    folder = tmp_path / "custom-svc" / "2020-01-01"
    folder.mkdir(parents=True)
    (folder / "service-2.json").write_text(json.dumps(model))
    loader = _create_loader(f"{tmp_path}{os.pathsep}~/does-not-exist")
    assert "custom-svc" in loader.list_available_services("service-2")
    assert loader.load_service_model("custom-svc", "service-2") == model
    assert "s3" in loader.list_available_services("service-2")  # built-ins still found
