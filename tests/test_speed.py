"""Speed measurement and the hardware prior: exact arithmetic on literal timings."""

from __future__ import annotations

import json

import pytest

from herd_mesh.core import speed
from herd_mesh.core.speed import SpeedBook, hardware_prior, prior_ms_per_mp_step


def test_the_reference_machine_is_exactly_one() -> None:
    assert hardware_prior("Apple M3 Ultra", 80) == 1.0


@pytest.mark.parametrize(
    ("faster", "slower"),
    [
        (("Apple M3 Ultra", 80), ("Apple M3 Max", 40)),
        (("Apple M4 Max", 40), ("Apple M4 Max", 32)),
        (("Apple M4 Max", 40), ("Apple M4 Pro", 20)),
        (("Apple M4 Pro", 20), ("Apple M4", 10)),
        (("Apple M4", 10), ("Apple M1", 8)),
        (("Apple M2 Ultra", 76), ("Apple M1 Ultra", 64)),
        (("Apple M1", 8), ("Intel(R) Xeon(R) CPU E5-2680", None)),
    ],
)
def test_prior_orders_chips_sensibly(faster: tuple[str, int | None], slower: tuple[str, int | None]) -> None:
    assert hardware_prior(*faster) > hardware_prior(*slower)


def test_unknown_core_count_assumes_the_smaller_bin() -> None:
    assert hardware_prior("Apple M4 Max") == hardware_prior("Apple M4 Max", 32)


@pytest.mark.parametrize("chip", ["Intel Xeon", "AMD Ryzen 9 7950X", "", "Intel(R) Core(TM) m3-7Y30", "Linux"])
def test_non_apple_hosts_get_the_conservative_factor(chip: str) -> None:
    assert hardware_prior(chip) == speed.UNKNOWN_CHIP_FACTOR


def test_chips_newer_than_the_table_still_get_a_sane_prior() -> None:
    m5_max = hardware_prior("Apple M5 Max", 40)
    assert hardware_prior("Apple M4 Max", 40) < m5_max < 2.0
    assert 0.0 < hardware_prior("Apple M7 Pro") < 1.0


def test_prior_ms_scales_the_catalogue_figure() -> None:
    assert prior_ms_per_mp_step("z-image-turbo", 1.0) == 4300.0
    assert prior_ms_per_mp_step("z-image-turbo", 0.5) == 8600.0
    assert prior_ms_per_mp_step("no-such-model", 1.0) == speed.DEFAULT_REF_MS_PER_MP_STEP


def test_book_uses_the_prior_until_it_has_measured() -> None:
    book = SpeedBook(factor=0.5)
    assert book.ms_per_mp_step("z-image-turbo") == 8600.0
    assert book.load_seconds("z-image-turbo") == speed.DEFAULT_LOAD_S
    book.record_run("z-image-turbo", mp_steps=4.0, ms=8000.0)
    assert book.ms_per_mp_step("z-image-turbo") == 2000.0  # the first sample replaces the prior
    assert book.ms_per_mp_step("flux-dev") == 4800.0  # other models keep their prior


def test_book_moving_average_arithmetic() -> None:
    book = SpeedBook(factor=1.0)
    book.record_run("m", 2.0, 2000.0)  # 1000 ms/MP-step
    book.record_run("m", 1.0, 2000.0)  # 2000 -> 0.7 x 1000 + 0.3 x 2000
    assert book.ms_per_mp_step("m") == pytest.approx(1300.0)
    assert book.runs["m"] == 2
    book.record_load("m", 10.0)
    book.record_load("m", 20.0)
    assert book.load_seconds("m") == pytest.approx(13.0)


def test_one_wild_sample_is_clamped() -> None:
    book = SpeedBook(factor=1.0)
    book.record_run("m", 1.0, 1000.0)
    book.record_run("m", 1.0, 100_000.0)  # a swap storm: clamped to 4 x 1000
    assert book.ms_per_mp_step("m") == pytest.approx(0.7 * 1000.0 + 0.3 * 4000.0)


def test_nonsense_timings_are_ignored() -> None:
    book = SpeedBook(factor=1.0)
    book.record_run("m", 0.0, 1000.0)
    book.record_run("m", 1.0, -5.0)
    book.record_load("m", 0.0)
    assert book.ms == {} and book.load == {}


def test_dict_round_trip_survives_json() -> None:
    book = SpeedBook.for_hardware("Apple M4 Pro", 20)
    book.record_run("z-image-turbo", 4.0, 40_000.0)
    book.record_load("z-image-turbo", 7.5)
    data = json.loads(json.dumps(book.to_dict()))
    assert SpeedBook.from_dict(data) == book
    assert SpeedBook.from_dict(data, chip="Apple M4 Pro", gpu_cores=20) == book


def test_measurements_from_other_hardware_are_dropped() -> None:
    book = SpeedBook.for_hardware("Apple M4 Pro", 20)
    book.record_run("z-image-turbo", 4.0, 40_000.0)
    moved = SpeedBook.from_dict(book.to_dict(), chip="Apple M3 Ultra", gpu_cores=80)
    assert moved.ms == {} and moved.factor == 1.0


@pytest.mark.parametrize(
    "garbage",
    [
        None,
        [],
        "x",
        {"models": "x"},
        {"factor": "fast", "models": {"m": {"ms_per_mp_step": "slow"}}},
        {"models": {"m": {"ms_per_mp_step": -1, "load_s": float("nan")}, "n": 5}},
    ],
)
def test_a_corrupt_state_file_gives_an_empty_book(garbage: object) -> None:
    book = SpeedBook.from_dict(garbage)
    assert book.ms == {} and book.load == {}
    assert book.factor == speed.UNKNOWN_CHIP_FACTOR
