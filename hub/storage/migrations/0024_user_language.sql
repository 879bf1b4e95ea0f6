-- The console's language a person chose (the header switch), kept with the account so it
-- follows them to another browser; null until they choose (the console speaks Vietnamese).
ALTER TABLE hub_user
    ADD COLUMN language text CHECK (language IN ('vi', 'en'));
