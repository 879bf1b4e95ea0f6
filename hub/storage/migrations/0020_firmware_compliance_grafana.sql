-- Grafana's firmware panel reads the compliance the firmware slice keeps
-- (firmware_device_compliance, refreshed by hub.firmware.service): the same judgement
-- /api/v1/firmware gives, not a second reading of the raw version strings.
GRANT SELECT ON firmware_device_compliance TO iochub_grafana;
