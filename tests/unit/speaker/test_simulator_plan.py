"""The simulator's fleet plan: uids, wards, faults and connection mode, all deterministic."""

from __future__ import annotations

import random
import resource
from collections import Counter

import pytest

from drivers.speaker.simulator import (
    ConnectionMode,
    Fault,
    Latency,
    SimulatorConfig,
    SpeakerSpec,
    assign_faults,
    choose_connection_mode,
    default_fleet,
    district_pairs,
)


def test_the_district_has_272_speakers_spread_over_8_wards() -> None:
    pairs = district_pairs()
    assert len(pairs) == len({uid for uid, _ in pairs}) == 272
    assert Counter(ward for _, ward in pairs) == {f"ward-{n:02d}": 34 for n in range(1, 9)}
    assert ("spk-03-0012", "ward-03") in pairs


def test_default_fleet_carries_per_speaker_credentials() -> None:
    fleet = default_fleet(
        [("spk-1", "ward-01"), ("spk-2", "ward-02")], credentials={"spk-2": ("spk-2", "s3cret")}
    )
    assert fleet[0] == SpeakerSpec("spk-1", "ward-01")
    assert (fleet[1].username, fleet[1].password) == ("spk-2", "s3cret")


def test_fault_fractions_are_seeded_and_exact() -> None:
    specs = default_fleet(district_pairs())
    fractions = {Fault.OFFLINE: 0.05, Fault.SLOW: 0.25}
    first = assign_faults(specs, fractions, seed=7)
    assert first == assign_faults(specs, fractions, seed=7)
    assert first != assign_faults(specs, fractions, seed=8)
    counts = Counter(fault for faults in first.values() for fault in faults)
    assert counts == {Fault.OFFLINE: round(0.05 * 272), Fault.SLOW: 68}


def test_per_speaker_faults_are_kept() -> None:
    specs = [SpeakerSpec("a", "w", faults=frozenset({Fault.NEVER_ACKS})), SpeakerSpec("b", "w")]
    assert assign_faults(specs, {}, seed=0) == {
        "a": frozenset({Fault.NEVER_ACKS}),
        "b": frozenset(),
    }
    with pytest.raises(ValueError, match=r"within 0\.\.1"):
        assign_faults(specs, {Fault.SLOW: 1.5}, seed=0)


def test_auto_mode_gives_small_fleets_their_own_connections() -> None:
    soft_limit, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    config = SimulatorConfig()
    if soft_limit != resource.RLIM_INFINITY and soft_limit < 272 + 256:
        pytest.skip(f"file limit {soft_limit} is below what 272 connections need")
    assert choose_connection_mode(272, config) is ConnectionMode.PER_SPEAKER
    assert choose_connection_mode(10_000, config) is ConnectionMode.POOLED
    forced = SimulatorConfig(connection_mode=ConnectionMode.POOLED)
    assert choose_connection_mode(3, forced) is ConnectionMode.POOLED


def test_latency_is_capped_and_reproducible() -> None:
    latency = Latency(median_s=0.01, sigma=1.0, max_s=0.05)
    first = [latency.sample(random.Random("s")) for _ in range(3)]
    assert first == [latency.sample(random.Random("s")) for _ in range(3)]
    samples = [latency.sample(random.Random(n)) for n in range(500)]
    assert max(samples) == 0.05
    assert 0.005 < sorted(samples)[250] < 0.02
