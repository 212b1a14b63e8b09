"""Reliability suite fixtures: hypothesis profiles and a rich seed artifact.

Profiles (pick one with ``HYPOTHESIS_PROFILE``; default ``ci``) size only the
fuzz tests of this folder, which apply them explicitly
(``seeds.fuzz_settings()``), so the rest of the suite keeps hypothesis'
defaults:

* ``dev`` - a quick local smoke run (50 cases per fuzz test);
* ``ci`` - what tox runs: 600 cases per fuzz test, 2,400 in all;
* ``nightly`` - 25,000 cases per fuzz test, for a scheduled job.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from conftest import AccelBackend, NumpyBackend, Plugin
from hypothesis import HealthCheck, settings

import byoc

from .seeds import Blobby, CodecPlugin, Tile, seed_model, with_attr

settings.register_profile(
    "dev", max_examples=50, deadline=None, derandomize=True, database=None
)
settings.register_profile(
    "ci",
    max_examples=600,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "nightly",
    max_examples=25_000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def fuzz_registry() -> Iterator[byoc.Registry]:
    """fake, accel and blobby backends plus the Tile codec (module-wide)."""
    reg = byoc.Registry()
    reg.add_plugin(Plugin(NumpyBackend, AccelBackend, Blobby), "fuzz-plugins")
    reg.add_plugin(CodecPlugin(), "fuzz-codecs")
    with byoc.use_registry(reg):
        yield reg


@pytest.fixture(scope="module")
def seed(fuzz_registry) -> bytes:
    """A valid artifact using every header feature: three backends, a composite
    body (nested graph), a codec-tagged attribute, engine blobs, a symbolic dim."""
    mod = byoc.compile(seed_model(), backends=["blobby", "accel", "fake"], quiet=True)
    mod = with_attr(mod, "Relu", "tile", Tile(4))
    return mod.to_bytes(engines=True)
