"""Signed audio links, and text-to-speech with espeak-ng's Vietnamese voice."""

from __future__ import annotations

import io
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import soundfile  # type: ignore[import-untyped]
from pydantic import SecretStr

from hub.broadcasts.tts import EspeakNg, TtsUnavailable, checked_text
from hub.broadcasts.urls import SPEAKER_AUDIO_PATH, AudioUrlSigner, url_key
from hub.errors import Forbidden, ValidationFailed

VOICES = ["vi", "vi-vn-x-south"]
NOW = datetime(2030, 3, 1, tzinfo=UTC)


def signature(url: str) -> tuple[int, str]:
    query = parse_qs(urlsplit(url).query)
    return int(query["expires"][0]), query["sig"][0]


def test_a_signed_link_works_for_its_asset_until_it_expires(tmp_path: Path) -> None:
    signer = AudioUrlSigner(url_key(SecretStr("k1"), tmp_path), "http://hub.local:8080/")
    url = signer.url(42, NOW + timedelta(minutes=10))
    expires, sig = signature(url)
    assert url.startswith(f"http://hub.local:8080{SPEAKER_AUDIO_PATH}/42?")
    signer.verify(42, expires, sig, now=NOW)
    with pytest.raises(Forbidden, match="expired"):
        signer.verify(42, expires, sig, now=NOW + timedelta(minutes=11))
    with pytest.raises(Forbidden, match="signature"):
        signer.verify(43, expires, sig, now=NOW)
    with pytest.raises(Forbidden, match="signature"):
        signer.verify(42, expires + 3600, sig, now=NOW)
    other_hub = AudioUrlSigner(url_key(SecretStr("k2"), tmp_path), "http://hub.local:8080")
    with pytest.raises(Forbidden, match="signature"):
        other_hub.verify(42, expires, sig, now=NOW)


def test_without_a_configured_secret_the_data_folder_key_signs(tmp_path: Path) -> None:
    assert url_key(None, tmp_path) == url_key(None, tmp_path)
    assert url_key(None, tmp_path) != url_key(SecretStr("k1"), tmp_path)


def test_text_checks_name_the_field() -> None:
    assert checked_text("  Thông báo ", None, VOICES, 100) == ("Thông báo", "vi")
    # Decomposed input (as some keyboards send it) is composed for the synthesiser.
    assert checked_text("Tho\u0302ng", "vi", VOICES, 100)[0] == "Thông"
    cases = {
        "x" * 101: "text",
        "   ": "text",
        "bell\x07": "text",
    }
    for text, field in cases.items():
        with pytest.raises(ValidationFailed) as caught:
            checked_text(text, None, VOICES, 100)
        assert caught.value.errors[0].field == field
    with pytest.raises(ValidationFailed) as caught:
        checked_text("Xin chào", "en", VOICES, 100)
    assert caught.value.errors[0].field == "voice"


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
async def test_espeak_ng_speaks_vietnamese() -> None:
    engine = EspeakNg()
    audio = await engine.synthesize("Thông báo: phường sẽ cắt nước từ tám giờ sáng mai.", "vi")
    info = soundfile.info(io.BytesIO(audio))
    assert info.format == "WAV"
    assert info.duration > 1.5


async def test_a_missing_engine_is_reported_as_unavailable() -> None:
    with pytest.raises(TtsUnavailable, match="not installed"):
        await EspeakNg(command="espeak-ng-not-here").synthesize("xin chào", "vi")
