-- A camera's clock drift carries the time it was read: a health check that cannot read the
-- clock (credentials refused before the clock answered, ONVIF silent, camera unreachable)
-- leaves the last reading in place, dated, instead of passing it off as fresh.
ALTER TABLE camera ADD COLUMN clock_checked_at timestamptz;
UPDATE camera SET clock_checked_at = last_probe_at WHERE clock_drift_s IS NOT NULL;

-- Nearest cameras to a place: a bounding box on the registry's coordinates comes first.
CREATE INDEX device_camera_location_idx ON device (latitude, longitude)
    WHERE kind = 'camera' AND latitude IS NOT NULL AND longitude IS NOT NULL;
