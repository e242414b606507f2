-- Dashboard sessions ended by a logout (CONTRACT §11). The session cookie is signed, not
-- stored, so a logout records its nonce here; every process serving /ui on this database
-- checks it, so the old cookie is refused everywhere. A row is deleted once the cookie
-- would have expired anyway (expires_at, Unix seconds).
CREATE TABLE IF NOT EXISTS ui_revoked_sessions (
    nonce TEXT PRIMARY KEY NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS ui_revoked_sessions_expiry ON ui_revoked_sessions (expires_at);
