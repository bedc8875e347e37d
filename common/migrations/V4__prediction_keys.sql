-- Keys an app's owner hands to the app's users: an app with at least one key answers
-- predictions only to requests carrying one. Only a SHA-256 of each key is kept; the key itself
-- is shown once, when it is created.
CREATE TABLE prediction_keys (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    app text NOT NULL,
    key_sha256 bytea NOT NULL UNIQUE,
    -- The key's first characters, so owners can tell their keys apart.
    prefix text NOT NULL,
    datetime_created timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX prediction_keys_app ON prediction_keys (user_id, app);
