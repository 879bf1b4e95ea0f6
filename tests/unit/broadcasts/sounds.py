"""Test audio made on the spot: tones in the containers speakers' audio arrives in."""

from __future__ import annotations

import io

import numpy as np
import soundfile  # type: ignore[import-untyped]

SUBTYPES = {"WAV": "PCM_16", "MP3": "MPEG_LAYER_III", "OGG": "VORBIS", "FLAC": "PCM_16"}


def tone(
    seconds: float = 1.0,
    *,
    container: str = "WAV",
    rate: int = 44_100,
    amplitude: float = 0.1,
    channels: int = 1,
    frequency: float = 440.0,
) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    wave = (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)
    data = np.stack([wave] * channels, axis=1) if channels > 1 else wave
    out = io.BytesIO()
    soundfile.write(out, data, rate, format=container, subtype=SUBTYPES[container])
    return out.getvalue()
