"""Shared fixtures: a tiny SynDFER prepared like DFEW, and a ResNet-18 pre-trained on it for a moment
(the cpu preset freezes its backbone and refuses to freeze one without weights)."""

import pytest


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    from msstlib.fixtures import tiny_synthetic

    return tiny_synthetic(tmp_path_factory.mktemp("syndfer") / "data")


@pytest.fixture(scope="session")
def r18(tmp_path_factory):
    from msstlib.fixtures import tiny_backbone

    return tiny_backbone(tmp_path_factory.mktemp("backbone") / "resnet18_tiny.pt")
