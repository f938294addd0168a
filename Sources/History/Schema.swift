// The schema and its migrations, versioned with PRAGMA user_version.
//
// Version 1:
//   meta(key, value)                      settings and counters: next_interaction_id,
//                                         retention_cap (0 = unlimited)
//   profiles(id, name, created_at)        external name → small integer
//   items(id, external_id)                catalog's text id → small integer
//   kinds(id, name)                       view=1 click=2 purchase=3 rating=4 skip=5, then own kinds
//   interactions(profile, ts, seq, item, kind, value)
//       WITHOUT ROWID, primary key (profile, ts, seq): one B-tree holds the rows
//       in exactly the order recent() reads them (time, then insertion order),
//       so there is no second index and each row is ~20 bytes on disk.
//       seq is the interaction id: global, increasing, never reused.
//   cached_recommendations(profile, model_id, catalog_id, history_digest, created_at, items JSON)
//   profile_summaries(profile, text, history_digest, interaction_count, created_at)
// Deleting a profile cascades to its interactions, cached results and summary.
//
// Version 2:
//   profile_summaries.last_interaction_id   the largest interaction id of the history
//       the summary was made from (NULL: no history, or a summary written before
//       version 2). Ids are global, increasing and never reused, so rows with a
//       larger id were added after the summary, and rows the summary saw that are
//       gone were removed: together the change since, which the row count and the
//       digest alone cannot measure (a profile at its retention cap keeps its count).
//
// A migration runs in one write transaction that also bumps user_version, so
// a crash leaves the database at the old version or the new one, never between.

/// The schema version this build writes and understands.
let schemaVersion = 2

/// 'palr' in ASCII: PRAGMA application_id marks the file as ours.
let applicationID: Int32 = 0x7061_6c72

/// migrations[n] takes a database from version n to version n + 1.
let migrations: [String] = [
    """
    CREATE TABLE meta(
        key TEXT PRIMARY KEY,
        value NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO meta(key, value) VALUES ('next_interaction_id', 1), ('retention_cap', 1000);

    CREATE TABLE profiles(
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        created_at INTEGER NOT NULL
    );

    CREATE TABLE items(
        id INTEGER PRIMARY KEY,
        external_id TEXT NOT NULL UNIQUE
    );

    CREATE TABLE kinds(
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE
    );
    INSERT INTO kinds(id, name) VALUES (1, 'view'), (2, 'click'), (3, 'purchase'), (4, 'rating'), (5, 'skip');

    CREATE TABLE interactions(
        profile INTEGER NOT NULL REFERENCES profiles(id) ON DELETE CASCADE,
        ts INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        item INTEGER NOT NULL,
        kind INTEGER NOT NULL,
        value REAL,
        PRIMARY KEY(profile, ts, seq)
    ) WITHOUT ROWID;

    CREATE TABLE cached_recommendations(
        profile INTEGER NOT NULL REFERENCES profiles(id) ON DELETE CASCADE,
        model_id TEXT NOT NULL,
        catalog_id TEXT NOT NULL,
        history_digest TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        items TEXT NOT NULL,
        PRIMARY KEY(profile, model_id, catalog_id)
    ) WITHOUT ROWID;

    CREATE TABLE profile_summaries(
        profile INTEGER PRIMARY KEY REFERENCES profiles(id) ON DELETE CASCADE,
        text TEXT NOT NULL,
        history_digest TEXT NOT NULL,
        interaction_count INTEGER NOT NULL,
        created_at INTEGER NOT NULL
    );
    """,
    // Nullable, no default: summaries of a version-1 database keep NULL, which
    // tells the reader that their marker is unknown.
    """
    ALTER TABLE profile_summaries ADD COLUMN last_interaction_id INTEGER;
    """,
]

extension Connection {
    /// Brings the database to `schemaVersion`, creating it when empty.
    /// Refuses files that are not ours and databases newer than this build.
    ///
    /// Several processes may create the same new file at once, so the version
    /// is only ever read inside a transaction (user_version, application_id and
    /// the schema objects from one snapshot), and the schema is created in one
    /// `BEGIN IMMEDIATE` transaction that re-reads the version once it holds the
    /// write lock and sets the version together with the tables: a connection
    /// either finds an empty file and creates everything, or waits and finds
    /// the finished schema with its version.
    ///
    /// Returns the older version this connection upgraded the file from, or nil
    /// when it made no upgrade (already current, newly created, or upgraded by
    /// another connection while this one waited for the write lock).
    @discardableResult
    func migrate() throws -> Int? {
        // An up-to-date database (the usual case) is checked in a read
        // transaction: opening it neither waits for another connection's write
        // nor needs write access (read-only stores never take the write lock).
        let found = try read("open") { try currentVersion() }
        if found == schemaVersion {
            // An immutable open (a read-only file system) reports the rollback journal and
            // could not switch anyway; nothing writes through it.
            if !immutable { try run("open") { try ensureWAL() } }
            return nil
        }
        if readOnly {
            throw HistoryError.readOnly(path: path, operation: "open", reason: found == 0
                ? "the file is empty (no palr schema yet), and creating the schema needs write access"
                : "its schema version \(found) is older than this build's \(schemaVersion), and upgrading it "
                    + "needs write access")
        }
        try run("open") {
            if found == 0 {
                // A brand-new file: page-level settings must be set before the
                // first page is written, which BEGIN IMMEDIATE and the switch to
                // WAL both do. auto_vacuum=INCREMENTAL lets compaction give
                // freed pages back to the file system. If another connection has
                // created the file meanwhile, its header wins and this is a no-op.
                try exec("PRAGMA auto_vacuum = INCREMENTAL")
            }
            // journal_mode=WAL cannot change inside a transaction.
            try ensureWAL()
        }
        return try write("open") { () -> Int? in
            // Another connection may have migrated while we waited for the lock:
            // the version read here, under the lock, is the one this connection changes.
            let start = try currentVersion()
            guard start < schemaVersion else { return nil }
            for version in start..<schemaVersion {
                try exec(migrations[version])
            }
            try exec("PRAGMA application_id = \(applicationID)")
            try exec("PRAGMA user_version = \(schemaVersion)")
            return start == 0 ? nil : start
        }
    }

    /// The schema version, after checking that the file is a palr history
    /// database this build can read. Call it inside a transaction: its reads
    /// must come from one snapshot, or another connection's schema creation
    /// could commit between them.
    private func currentVersion() throws -> Int {
        let version = Int(try scalar("PRAGMA user_version"))
        let application = Int32(truncatingIfNeeded: try scalar("PRAGMA application_id"))
        if version == 0 {
            let tables = try scalar("SELECT count(*) FROM sqlite_schema")
            if tables > 0 || application != 0 {
                throw HistoryError.notAHistoryDatabase(
                    path: path, reason: "it has \(tables) schema objects but no palr schema version")
            }
            return 0
        }
        if application != applicationID {
            throw HistoryError.notAHistoryDatabase(
                path: path, reason: "its application id is \(application), not palr's \(applicationID)")
        }
        // PRAGMA user_version is a signed 32-bit field: a negative one (set by another
        // tool) was taken for an old version and indexed the migrations with it (a crash).
        if version < 0 {
            throw HistoryError.notAHistoryDatabase(
                path: path, reason: "its schema version is \(version); palr's versions are 1 to \(schemaVersion)")
        }
        if version > schemaVersion {
            throw HistoryError.newerSchema(path: path, found: version, supported: schemaVersion)
        }
        return version
    }

    /// Switches to write-ahead logging (a persistent setting of the file).
    private func ensureWAL() throws {
        let mode = try scalarText("PRAGMA journal_mode")
        guard mode.lowercased() != "wal" else { return }
        let switched = try scalarText("PRAGMA journal_mode = WAL")
        guard switched.lowercased() == "wal" else {
            throw HistoryError.cannotOpen(path: path, reason: "the file system does not support SQLite's WAL mode "
                                          + "(journal mode stayed '\(switched)')")
        }
    }
}
