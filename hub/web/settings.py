"""Settings of the console (IOCHUB_CONSOLE__*)."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import BaseModel, Field, field_validator


class ConsoleSettings(BaseModel):
    tile_url: str = Field(
        "",
        description="The map's tiles, a Leaflet URL template such as "
        "https://tiles.ioc.example/{z}/{x}/{y}.png (the IOC's own tile server); empty: ward "
        "outlines and devices on a plain background, nothing fetched.",
    )
    tile_attribution: str = Field(
        "", max_length=300, description="Credit the tile source asks for, shown on the map."
    )
    tile_max_zoom: int = Field(19, ge=1, le=24, description="Deepest zoom the tiles go to.")

    @field_validator("tile_url")
    @classmethod
    def _template(cls, value: str) -> str:
        value = value.strip()
        if not value:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("an http(s) URL of the tile server")
        if not all(p in value for p in ("{z}", "{x}", "{y}")):
            raise ValueError("the URL names {z}, {x} and {y}")
        return value

    def tile_origin(self) -> str | None:
        """Where tiles come from, for the page's Content-Security-Policy."""
        if not self.tile_url:
            return None
        parts = urlsplit(self.tile_url.replace("{s}", "*"))
        return f"{parts.scheme}://{parts.netloc}"
