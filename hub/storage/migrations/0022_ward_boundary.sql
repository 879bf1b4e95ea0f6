-- A ward's outline for the map: a GeoJSON Polygon or MultiPolygon (RFC 7946), positions
-- [longitude, latitude] in WGS 84; null until someone sets it (the registry's wards API
-- checks the rings).
ALTER TABLE ward
    ADD COLUMN boundary jsonb,
    ADD CONSTRAINT ward_boundary_type CHECK (
        boundary IS NULL OR boundary->>'type' IN ('Polygon', 'MultiPolygon')
    );

-- A speaker's page lists its latest deliveries.
CREATE INDEX broadcast_delivery_device_idx ON broadcast_delivery (device_id);
