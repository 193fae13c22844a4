//! Versioned schema migrations. Each entry moves the schema from version `i` to `i + 1`; the applied
//! version lives in SQLite's `user_version`, and a database newer than this binary is refused.

/// Migrations in order; never edit a released one, append a new one.
pub const SQLITE: &[&str] = &[
    // 1: the initial schema
    r#"
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE api_tokens (hash TEXT PRIMARY KEY, id TEXT NOT NULL UNIQUE, name TEXT NOT NULL,
        role TEXT NOT NULL, created_at INTEGER NOT NULL);
    CREATE TABLE enroll_tokens (hash TEXT PRIMARY KEY, id TEXT NOT NULL UNIQUE, site TEXT,
        tags TEXT NOT NULL, created_at INTEGER NOT NULL, expires_at INTEGER, used_by TEXT);
    CREATE TABLE devices (id TEXT PRIMARY KEY, public_key TEXT NOT NULL UNIQUE, product TEXT NOT NULL,
        hardware_class TEXT NOT NULL, site TEXT, tags TEXT NOT NULL, enrolled_at INTEGER NOT NULL,
        last_seen INTEGER NOT NULL, online INTEGER NOT NULL, report TEXT);
    CREATE TABLE sequences (device TEXT NOT NULL, kind TEXT NOT NULL, seq INTEGER NOT NULL,
        PRIMARY KEY (device, kind));
    CREATE TABLE events (id INTEGER PRIMARY KEY, device TEXT NOT NULL, seq INTEGER NOT NULL,
        at INTEGER NOT NULL, rollout TEXT, from_state TEXT NOT NULL, to_state TEXT NOT NULL, reason TEXT);
    CREATE INDEX events_device ON events (device, id);
    CREATE TABLE sites (name TEXT PRIMARY KEY, tz TEXT NOT NULL, windows TEXT NOT NULL,
        max_concurrent INTEGER);
    CREATE TABLE releases (version TEXT PRIMARY KEY, product TEXT NOT NULL,
        security_version INTEGER NOT NULL, bundle_sha256 TEXT NOT NULL, bundle_size INTEGER NOT NULL,
        image_sha256 TEXT NOT NULL, image_size INTEGER NOT NULL, created_at INTEGER NOT NULL);
    CREATE TABLE quarantines (version TEXT NOT NULL, hardware_class TEXT NOT NULL, reason TEXT NOT NULL,
        at INTEGER NOT NULL, PRIMARY KEY (version, hardware_class));
    CREATE TABLE deltas (source_sha256 TEXT NOT NULL, version TEXT NOT NULL,
        artifact_sha256 TEXT NOT NULL, size INTEGER NOT NULL, PRIMARY KEY (source_sha256, version));
    CREATE TABLE rollouts (id TEXT PRIMARY KEY, version TEXT NOT NULL, selector TEXT NOT NULL,
        status TEXT NOT NULL, spec TEXT NOT NULL, state TEXT NOT NULL, created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL);
    CREATE TABLE decisions (id INTEGER PRIMARY KEY, rollout TEXT NOT NULL, at INTEGER NOT NULL,
        kind TEXT NOT NULL, message TEXT NOT NULL);
    CREATE INDEX decisions_rollout ON decisions (rollout, id);
    CREATE TABLE desired (device TEXT PRIMARY KEY, seq INTEGER NOT NULL, rollout TEXT,
        envelope TEXT NOT NULL);
    CREATE TABLE audit (id INTEGER PRIMARY KEY, at INTEGER NOT NULL, actor TEXT NOT NULL,
        action TEXT NOT NULL, target TEXT NOT NULL, detail TEXT NOT NULL);
    "#,
    // 2: per-device MQTT credentials (hashes only), for the external broker's password file
    r#"
    CREATE TABLE broker_credentials (device TEXT PRIMARY KEY, hash TEXT NOT NULL,
        updated_at INTEGER NOT NULL);
    "#,
    // 3: events are history kept by (device, seq), not behind a high-water mark, so late (reordered)
    // events are stored and a replayed one hits the unique index. The old guard kept seqs unique
    // already; the DELETE only makes sure the index can be built.
    r#"
    DELETE FROM events WHERE id NOT IN (SELECT MIN(id) FROM events GROUP BY device, seq);
    DROP INDEX events_device;
    CREATE UNIQUE INDEX events_device_seq ON events (device, seq);
    "#,
    // 4: a change feed for the engine's fleet view: every write of a device row gives it the next
    // `rev` (writers are serial in SQLite, so revs commit in order), and the engine reads only the
    // rows above the highest rev it has seen. The inner UPDATE sets only `rev`, so it does not fire
    // the trigger again.
    r#"
    ALTER TABLE devices ADD COLUMN rev INTEGER NOT NULL DEFAULT 0;
    UPDATE devices SET rev = rowid;
    CREATE INDEX devices_rev ON devices (rev);
    CREATE TRIGGER devices_rev_insert AFTER INSERT ON devices BEGIN
        UPDATE devices SET rev = (SELECT MAX(rev) FROM devices) + 1 WHERE rowid = NEW.rowid;
    END;
    CREATE TRIGGER devices_rev_update AFTER UPDATE OF public_key, product, hardware_class, site, tags,
        last_seen, online, report ON devices BEGIN
        UPDATE devices SET rev = (SELECT MAX(rev) FROM devices) + 1 WHERE rowid = NEW.rowid;
    END;
    -- and a revision per rollout row, so the engine re-reads (and re-parses) a rollout's state only
    -- when someone else wrote it
    ALTER TABLE rollouts ADD COLUMN rev INTEGER NOT NULL DEFAULT 0;
    CREATE TRIGGER rollouts_rev AFTER UPDATE OF status, spec, state ON rollouts BEGIN
        UPDATE rollouts SET rev = OLD.rev + 1 WHERE rowid = NEW.rowid;
    END;
    "#,
];
