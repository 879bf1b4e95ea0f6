"""Audio is proven by decoding it, normalised to the loudness target, stored by content."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pyloudnorm  # type: ignore[import-untyped]
import pytest
import soundfile  # type: ignore[import-untyped]

from hub.broadcasts.audio import (
    OUTPUT_RATE,
    AudioRejected,
    AudioStore,
    PreparedAudio,
    prepare_audio,
)
from tests.unit.broadcasts.sounds import tone


def prepared(raw: bytes) -> PreparedAudio:
    return prepare_audio(raw, target_lufs=-16.0, max_gain_db=24.0, max_duration_s=60.0)


def loudness(wav: bytes) -> float:
    samples, rate = soundfile.read(io.BytesIO(wav), dtype="float64")
    return float(pyloudnorm.Meter(rate).integrated_loudness(samples))


@pytest.mark.parametrize("container", ["WAV", "MP3", "OGG"])
def test_each_container_becomes_a_normalised_16_bit_wav(container: str) -> None:
    raw = tone(2.0, container=container, amplitude=0.05, channels=2)
    audio = prepared(raw)
    info = soundfile.info(io.BytesIO(audio.wav))
    assert (info.format, info.subtype, info.channels) == ("WAV", "PCM_16", 1)
    assert info.samplerate == audio.sample_rate == OUTPUT_RATE
    assert audio.original_format == container
    assert audio.original_sha256 == hashlib.sha256(raw).hexdigest()
    assert audio.sha256 == hashlib.sha256(audio.wav).hexdigest()
    assert audio.duration_s == pytest.approx(2.0, abs=0.1)
    assert audio.loudness_lufs is not None and audio.loudness_lufs < -25
    assert loudness(audio.wav) == pytest.approx(-16.0, abs=0.5)


def test_loud_audio_is_brought_down_and_never_clips() -> None:
    audio = prepared(tone(1.0, amplitude=0.99))
    samples, _ = soundfile.read(io.BytesIO(audio.wav))
    assert audio.gain_db < 0
    assert np.max(np.abs(samples)) <= 0.9


def test_silence_is_kept_as_it_is() -> None:
    audio = prepared(tone(1.0, amplitude=0.0))
    assert audio.loudness_lufs is None
    assert audio.gain_db == 0


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "empty"),
        (b"this is a text file named announcement.mp3\n" * 50, "not MP3, OGG Vorbis or WAV"),
        (b"ID3\x03\x00\x00\x00" + bytes(4000), "not MP3, OGG Vorbis or WAV"),
        (tone(0.2), "shorter than"),
        (tone(61.0, rate=8000), "longer than"),
        (tone(1.0, container="FLAC"), "FLAC audio is not accepted"),
    ],
)
def test_what_is_not_playable_audio_is_refused_with_the_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(AudioRejected) as caught:
        prepared(raw)
    assert caught.value.errors[0].field == "file"
    assert reason in caught.value.errors[0].message


def test_store_is_content_addressed(tmp_path: Path) -> None:
    store = AudioStore(tmp_path / "audio")
    audio = prepared(tone(1.0))
    path = store.save(audio)
    assert path == store.path(audio.sha256)
    assert path.read_bytes() == audio.wav
    assert store.save(audio) == path
    assert [p.name for p in (tmp_path / "audio").iterdir()] == [f"{audio.sha256}.wav"]
    with pytest.raises(ValueError):
        store.path("../../etc/passwd")
