//! The ledger's schema: versioned steps, applied in order by `Ledger::open_file`.

/// Versioned schema steps; index + 1 is the version after the step. Never edit a step that has
/// shipped: add one.
pub(super) const MIGRATIONS: &[&str] = &[
    r#"
    CREATE TABLE incidents (
        event_id TEXT PRIMARY KEY,
        camera TEXT NOT NULL,
        zone TEXT NOT NULL,
        kind TEXT NOT NULL,
        start_ms INTEGER NOT NULL,
        last_seen_ms INTEGER NOT NULL,
        end_ms INTEGER,
        end_reason TEXT,
        x1 REAL, y1 REAL, x2 REAL, y2 REAL
    );
    CREATE INDEX incidents_place ON incidents (camera, zone, kind, start_ms);
    CREATE TABLE messages (
        event_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        type TEXT NOT NULL,
        payload TEXT NOT NULL,
        PRIMARY KEY (event_id, seq)
    );
"#,
    // v2: every field of the incident (who is responsible, what was seen, its recurrence), its
    // evidence files and its state changes; filled in for v1 incidents from their latest message.
    r#"
    ALTER TABLE incidents ADD COLUMN camera_name TEXT NOT NULL DEFAULT '';
    ALTER TABLE incidents ADD COLUMN zone_name TEXT NOT NULL DEFAULT '';
    ALTER TABLE incidents ADD COLUMN grid TEXT NOT NULL DEFAULT '';
    ALTER TABLE incidents ADD COLUMN responsible_unit TEXT NOT NULL DEFAULT '';
    ALTER TABLE incidents ADD COLUMN road_section TEXT NOT NULL DEFAULT '';
    ALTER TABLE incidents ADD COLUMN shop TEXT NOT NULL DEFAULT '';
    ALTER TABLE incidents ADD COLUMN contact TEXT NOT NULL DEFAULT '';
    ALTER TABLE incidents ADD COLUMN category_code TEXT NOT NULL DEFAULT '';
    ALTER TABLE incidents ADD COLUMN category_name TEXT NOT NULL DEFAULT '';
    ALTER TABLE incidents ADD COLUMN label TEXT NOT NULL DEFAULT '';
    ALTER TABLE incidents ADD COLUMN score REAL NOT NULL DEFAULT 0;
    ALTER TABLE incidents ADD COLUMN track_id INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE incidents ADD COLUMN last_seq INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE incidents ADD COLUMN relapse INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE incidents ADD COLUMN count_7d INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE incidents ADD COLUMN count_30d INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE incidents ADD COLUMN previous_end TEXT;
    UPDATE incidents SET
        (camera_name, zone_name, grid, responsible_unit, road_section, shop, contact,
         category_code, category_name, label, score, track_id, last_seq, relapse, count_7d,
         count_30d, previous_end) =
        (SELECT json_extract(m.payload, '$.camera.name'), json_extract(m.payload, '$.zone.name'),
                json_extract(m.payload, '$.zone.grid'), json_extract(m.payload, '$.zone.responsible_unit'),
                coalesce(json_extract(m.payload, '$.zone.road_section'), ''),
                coalesce(json_extract(m.payload, '$.zone.shop'), ''),
                coalesce(json_extract(m.payload, '$.zone.contact'), ''),
                json_extract(m.payload, '$.category.code'), json_extract(m.payload, '$.category.name'),
                json_extract(m.payload, '$.object.label'), json_extract(m.payload, '$.object.score'),
                json_extract(m.payload, '$.object.track_id'), m.seq,
                coalesce(json_extract(m.payload, '$.recurrence.relapse'), 0),
                coalesce(json_extract(m.payload, '$.recurrence.count_7d'), 0),
                coalesce(json_extract(m.payload, '$.recurrence.count_30d'), 0),
                json_extract(m.payload, '$.recurrence.previous_end')
         FROM messages m WHERE m.event_id = incidents.event_id ORDER BY m.seq DESC LIMIT 1)
        WHERE EXISTS (SELECT 1 FROM messages m WHERE m.event_id = incidents.event_id);
    -- v1 wrote reasons in Rust's spelling; the wire name is what every reader expects.
    UPDATE incidents SET end_reason = CASE end_reason
        WHEN 'ObjectLeft' THEN 'object_left' WHEN 'ScheduleEnded' THEN 'schedule_ended'
        WHEN 'ZoneDisabled' THEN 'zone_disabled' WHEN 'StreamEnded' THEN 'stream_ended'
        WHEN 'Interrupted' THEN 'interrupted' ELSE end_reason END;
    CREATE INDEX incidents_start ON incidents (start_ms);
    CREATE TABLE evidence (
        path TEXT PRIMARY KEY,
        event_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        kind TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        deleted_ms INTEGER
    );
    CREATE INDEX evidence_event ON evidence (event_id);
    CREATE TABLE state_changes (
        id INTEGER PRIMARY KEY,
        event_id TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        state TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX state_changes_event ON state_changes (event_id, id);
"#,
    // v3: the outbox, in the same file so a message is recorded and queued in one transaction:
    // no message is ever in the ledger but not on its way to the broker.
    r#"
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        type TEXT NOT NULL,
        kind TEXT NOT NULL,
        camera TEXT NOT NULL,
        payload TEXT NOT NULL,
        queued_ms INTEGER NOT NULL
    );
    CREATE INDEX outbox_event ON outbox (event_id, seq);
"#,
    // v4: the closed loop. Each event's review state and every change of it; console accounts
    // and their sessions (secrets as digests only); things an operator said are not what the
    // event claimed, which the camera then leaves alone while they stay.
    r#"
    ALTER TABLE incidents ADD COLUMN review_state TEXT NOT NULL DEFAULT 'pending';
    CREATE TABLE reviews (
        id INTEGER PRIMARY KEY,
        event_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        at_ms INTEGER NOT NULL,
        by_name TEXT NOT NULL,
        by_role TEXT NOT NULL,
        from_state TEXT NOT NULL,
        to_state TEXT NOT NULL,
        reason TEXT,
        note TEXT NOT NULL DEFAULT '',
        unit TEXT,
        due TEXT,
        photo_path TEXT,
        photo_sha256 TEXT,
        UNIQUE (event_id, seq)
    );
    CREATE INDEX reviews_at ON reviews (at_ms);
    CREATE TABLE accounts (
        name TEXT PRIMARY KEY,
        role TEXT NOT NULL,
        grids TEXT NOT NULL DEFAULT '[]',
        password_hash TEXT NOT NULL,
        token_digest TEXT UNIQUE,
        created_ms INTEGER NOT NULL
    );
    CREATE TABLE sessions (
        digest TEXT PRIMARY KEY,
        account TEXT NOT NULL,
        expires_ms INTEGER NOT NULL
    );
    CREATE TABLE suppressions (
        id INTEGER PRIMARY KEY,
        camera TEXT NOT NULL,
        zone TEXT NOT NULL,
        event_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        label TEXT NOT NULL,
        x1 REAL NOT NULL, y1 REAL NOT NULL, x2 REAL NOT NULL, y2 REAL NOT NULL,
        by_name TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        ended_ms INTEGER,
        end_reason TEXT
    );
    CREATE INDEX suppressions_camera ON suppressions (camera, ended_ms);
"#,
    // v5: when each message was written, on the node's clock (a cluster checks that a node
    // wrote nothing for a camera after it lost it), and whether it is in the city ledger.
    r#"
    ALTER TABLE messages ADD COLUMN written_ms INTEGER;
    -- In a cluster with a city ledger: 0 until the message is in PostgreSQL.
    ALTER TABLE messages ADD COLUMN shipped INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX messages_unshipped ON messages (shipped) WHERE shipped = 0;
"#,
    // v6: review changes go to the city ledger too.
    r#"
    ALTER TABLE reviews ADD COLUMN shipped INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX reviews_unshipped ON reviews (shipped) WHERE shipped = 0;
"#,
];
