"""Fuzzing the image check: mutated real files and hostile-corpus files must only ever come out as an
ImageInput or a UserError, never another exception (a traceback would reach the error funnel, and an
exception type nobody expected is where a crash or a slow path hides).

The default suite runs a fixed, derandomized few hundred examples, so a failure is reproducible; the
long run is random and much longer: `pytest tests/test_image_fuzz.py --slow`. The check runs in-process
here (inspect_image itself), so a failure shows its traceback; the worker adds only its limits.
"""

from __future__ import annotations

import functools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import UserError
from core.spec import ImageInput
from services.images import inspect_image
from tests import hostile_images as hostile
from tests.test_image_limits import adam7_png
from tests.test_images import animated, encode

SMALL = 0.0005  # hostile files at this scale keep their shape in a few kilobytes


@functools.cache
def seeds() -> tuple[bytes, ...]:
    normal = [
        encode("JPEG", (320, 400), noise=True),
        encode("JPEG", (320, 400), noise=True, progressive=True),
        encode("JPEG", (320, 400), restart_marker_blocks=4),
        encode("JPEG", (320, 400), mode="CMYK"),
        encode("PNG", (320, 400), noise=True),
        encode("PNG", (320, 400), mode="P"),
        encode("PNG", (320, 400), mode="I;16"),
        adam7_png(320, 400),
        encode("WEBP", (320, 400), noise=True),
        encode("WEBP", (320, 400), lossless=True),
        animated("PNG"),
        animated("WEBP"),
    ]
    tiny = {"png-decompression-bomb": 0.01, "png-ztxt-bomb": 0.05}
    corpus = [item.build(tiny.get(item.name, SMALL)) for item in hostile.corpus()]
    return tuple(normal + [data for data in corpus if len(data) < 400_000])


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(seeds())))
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, max(0, len(data) - 1)))
        action = draw(st.sampled_from(["flip", "set", "cut", "insert", "delete", "repeat"]))
        if action == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif action == "set" and data:
            data[at] = draw(st.sampled_from([0x00, 0xFF, 0xD8, 0xD9, 0xDA, 0xC2, 0x7F, 0x80]))
        elif action == "cut":
            del data[at:]
        elif action == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif action == "delete":
            del data[at : at + draw(st.integers(1, 64))]
        elif action == "repeat":
            size = draw(st.integers(1, 256))
            data[at:at] = data[at : at + size] * draw(st.integers(2, 50))
    return bytes(data)


def only_image_or_user_error(data: bytes) -> None:
    try:
        result = inspect_image(data)
    except UserError as exc:
        assert exc.message and "Traceback" not in exc.message
        return
    assert isinstance(result, ImageInput) and result.width > 300 and result.height > 300


BOUNDED = settings(
    max_examples=300,
    derandomize=True,  # the same examples on every run: a failure in CI is a failure on your machine
    deadline=None,  # speed is the benchmark's business, never a test's
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@BOUNDED
@given(mutated())
def test_mutated_images_only_come_out_as_an_image_or_a_user_error(data: bytes) -> None:
    only_image_or_user_error(data)


@pytest.mark.slow
@settings(
    BOUNDED,
    max_examples=20_000,
    derandomize=False,
    suppress_health_check=[*BOUNDED.suppress_health_check, HealthCheck.function_scoped_fixture],
)
@given(mutated())
def test_mutated_images_long_run(slow_enabled: None, data: bytes) -> None:
    only_image_or_user_error(data)


@pytest.fixture
def slow_enabled(request: pytest.FixtureRequest) -> None:
    if not request.config.getoption("--slow", default=False):
        pytest.skip("a long run: pass --slow")
