// A thin layer over the SQLite C API: one connection, cached prepared
// statements, transactions, and the mapping of result codes to HistoryError.
//
// Locking model (WAL):
//   - every write is one `BEGIN IMMEDIATE … COMMIT`: the write lock is taken up
//     front, so a transaction never has to upgrade (no SQLITE_BUSY_SNAPSHOT);
//   - every read is one `BEGIN … COMMIT`: all its statements see one snapshot;
//   - SQLite's busy handler waits `busyTimeout` for a lock; the few SQLITE_BUSY
//     cases that do not go through the handler (WAL recovery, a reader racing a
//     WAL restart) are retried here, with backoff, until the same deadline.
// So a caller sees `HistoryError.busy` only after the whole timeout has passed.
import CSQLite
import FileSafety
import Foundation

/// SQLite's SQLITE_TRANSIENT (the macro is not imported): "copy the bytes now".
private let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

/// A failed SQLite call, before it is given the store's context.
struct SQLiteError: Error {
    let code: Int32  // extended result code
    let message: String
    /// The errno of the failed system call behind the error, or 0.
    var systemErrno: Int32 = 0

    var primaryCode: Int32 { code & 0xff }
    var isBusy: Bool { primaryCode == SQLITE_BUSY || primaryCode == SQLITE_LOCKED }
}

/// One prepared statement, owned by the connection's statement cache.
final class Statement {
    let handle: OpaquePointer  // sqlite3_stmt*
    unowned let connection: Connection

    init(handle: OpaquePointer, connection: Connection) {
        self.handle = handle
        self.connection = connection
    }

    deinit { sqlite3_finalize(handle) }

    // MARK: binding (1-based parameter indices)

    func bind(_ index: Int32, _ value: Int64) throws {
        try check(sqlite3_bind_int64(handle, index, value))
    }

    func bind(_ index: Int32, _ value: Int) throws {
        try bind(index, Int64(value))
    }

    func bind(_ index: Int32, _ value: Int64?) throws {
        if let value {
            try bind(index, value)
        } else {
            try check(sqlite3_bind_null(handle, index))
        }
    }

    func bind(_ index: Int32, _ value: Double?) throws {
        if let value {
            try check(sqlite3_bind_double(handle, index, value))
        } else {
            try check(sqlite3_bind_null(handle, index))
        }
    }

    func bind(_ index: Int32, _ value: String) throws {
        try check(sqlite3_bind_text(handle, index, value, -1, transient))
    }

    // MARK: stepping

    /// Runs one step: true when a row is ready, false when done.
    func step() throws -> Bool {
        let rc = sqlite3_step(handle)
        if rc == SQLITE_ROW { return true }
        if rc == SQLITE_DONE { return false }
        throw connection.lastError(rc)
    }

    /// Runs a statement that returns no rows (or whose rows are not needed).
    func run() throws {
        defer { reset() }
        while try step() {}
    }

    /// Resets the statement and clears its bindings for the next use.
    func reset() {
        sqlite3_reset(handle)
        sqlite3_clear_bindings(handle)
    }

    // MARK: columns (0-based)

    func int64(_ column: Int32) -> Int64 { sqlite3_column_int64(handle, column) }
    func int(_ column: Int32) -> Int { Int(sqlite3_column_int64(handle, column)) }
    func isNull(_ column: Int32) -> Bool { sqlite3_column_type(handle, column) == SQLITE_NULL }
    func isInteger(_ column: Int32) -> Bool { sqlite3_column_type(handle, column) == SQLITE_INTEGER }
    func isFloat(_ column: Int32) -> Bool { sqlite3_column_type(handle, column) == SQLITE_FLOAT }
    /// A TEXT column's string, or nil when the column holds another type or bytes that
    /// are not valid UTF-8 (which `text` would replace with U+FFFD).
    func validText(_ column: Int32) -> String? {
        guard sqlite3_column_type(handle, column) == SQLITE_TEXT else { return nil }
        guard let bytes = sqlite3_column_text(handle, column) else { return "" }
        let count = Int(sqlite3_column_bytes(handle, column))
        return String(validating: UnsafeBufferPointer(start: bytes, count: count), as: UTF8.self)
    }
    /// A column's value for an error message: its type, and the value itself when short.
    func describe(_ column: Int32) -> String {
        switch sqlite3_column_type(handle, column) {
        case SQLITE_NULL: return "NULL"
        case SQLITE_INTEGER: return "\(int64(column))"
        case SQLITE_FLOAT: return "the real number \(sqlite3_column_double(handle, column))"
        case SQLITE_BLOB: return "a blob of \(sqlite3_column_bytes(handle, column)) bytes"
        default: return "the text \(Validation.quoted(text(column), limit: 40))"
        }
    }
    func optionalDouble(_ column: Int32) -> Double? {
        isNull(column) ? nil : sqlite3_column_double(handle, column)
    }
    func optionalInt64(_ column: Int32) -> Int64? {
        isNull(column) ? nil : sqlite3_column_int64(handle, column)
    }
    func text(_ column: Int32) -> String {
        guard let bytes = sqlite3_column_text(handle, column) else { return "" }
        let count = Int(sqlite3_column_bytes(handle, column))
        return String(decoding: UnsafeBufferPointer(start: bytes, count: count), as: UTF8.self)
    }

    private func check(_ rc: Int32) throws {
        if rc != SQLITE_OK { throw connection.lastError(rc) }
    }
}

/// Owns one `sqlite3*` handle and closes it in `deinit`. Not thread-safe by
/// itself: `HistoryStore` serialises all use through `lock`.
final class Connection: @unchecked Sendable {
    /// The store's name in messages: the file opened, or the name a store being built
    /// under a temporary name will have (`shownAs`).
    let path: String
    /// Opened with SQLITE_OPEN_READONLY.
    let readOnly: Bool
    /// Opened as immutable (read-only, on a read-only file system, no WAL content).
    let immutable: Bool
    let busyTimeout: Double
    let lock = NSLock()
    private var handle: OpaquePointer?  // sqlite3*; nil once closed
    private var statements: [String: Statement] = [:]

    init(path: String, create: Bool, readOnly: Bool = false, immutable: Bool = false, busyTimeout: Double,
         shownAs: String? = nil) throws(HistoryError) {
        self.path = shownAs ?? path
        self.readOnly = readOnly
        self.busyTimeout = busyTimeout
        if (readOnly || !create) && !FileManager.default.fileExists(atPath: path) {
            throw .cannotOpen(path: path, reason: "no such file (a database is created by `palr history add "
                              + "--create-profile` or `palr history import`)")
        }
        try Self.refuseBeforeOpening(path: path, create: create, readOnly: readOnly)
        var db: OpaquePointer?
        // NOMUTEX: HistoryStore serialises all use of a connection through `lock`.
        var flags = (readOnly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE) | SQLITE_OPEN_EXRESCODE
            | SQLITE_OPEN_NOMUTEX
        if create && !readOnly { flags |= SQLITE_OPEN_CREATE }
        // `immutable` (HistoryStore's fallback on a read-only file system, where WAL mode
        // cannot create its -shm): no locks, no -shm, SQLite assumes the file never changes.
        var name = path
        self.immutable = immutable
        if immutable {
            // An absolute path keeps an empty authority ("file:///…"): "file://srv/…"
            // would name a host.
            name = (path.hasPrefix("/") ? "file://" : "file:") + Self.uriEscaped(path) + "?immutable=1"
            flags |= SQLITE_OPEN_URI
        }
        let rc = sqlite3_open_v2(name, &db, flags, nil)
        guard rc == SQLITE_OK, let db else {
            let reason = db.map { String(cString: sqlite3_errmsg($0)) } ?? String(cString: sqlite3_errstr(rc))
            let systemErrno = db.map { sqlite3_system_errno($0) } ?? 0
            sqlite3_close_v2(db)
            let directory = (path as NSString).deletingLastPathComponent
            let folder = directory.isEmpty ? "." : directory
            let exists = FileManager.default.fileExists(atPath: path)
            var hint = ""
            if !FileManager.default.fileExists(atPath: folder) {
                hint = " (directory \(folder) does not exist)"
            } else if !exists && access(folder, W_OK | X_OK) != 0 {
                hint = " (permission denied: cannot create a file in \(folder))"
            } else if exists && access(path, R_OK) != 0 {
                hint = " (permission denied: the file is not readable)"
            } else if systemErrno != 0 {
                hint = " (\(String(cString: strerror(systemErrno))))"
            }
            throw .cannotOpen(path: path, reason: reason + hint)
        }
        handle = db
        sqlite3_extended_result_codes(db, 1)
        sqlite3_busy_timeout(db, Int32(clamping: Int((busyTimeout * 1000).rounded())))
    }

    deinit { close() }

    static func onReadOnlyFileSystem(_ path: String) -> Bool {
        var info = statvfs()
        return statvfs(path, &info) == 0 && info.f_flag & UInt(ST_RDONLY) != 0
    }

    /// Whether the WAL beside the database file `target` (a link resolved) has content.
    static func hasWALContent(target: String) -> Bool {
        var info = stat()
        return stat(target + "-wal", &info) == 0 && info.st_size > 0
    }

    /// `path` for a `file:` URI: every byte but unreserved characters and '/' as %XX.
    static func uriEscaped(_ path: String) -> String {
        var out = ""
        for byte in path.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
                 UInt8(ascii: "~"), UInt8(ascii: "/"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                out += String(format: "%%%02X", byte)
            }
        }
        return out
    }

    /// Refuses an existing file that opening would harm or misread. sqlite3_open_v2
    /// acts before it can report anything: it turns an empty file into a database
    /// when the schema is written, fails on a device with an unclear I/O error, and
    /// on a file this process cannot write it falls back to read-only after creating
    /// `-wal` and `-shm` beside it, owned by this user, which can then lock the
    /// database's owner out. A read-only open creates them just the same (WAL mode
    /// needs them even to read), so it is refused when they would be created as
    /// another user than the owner (`foreignWALFilesReadingWouldCreate`). So these
    /// checks run first, and a refusal leaves no file behind. `-wal` and `-shm` files that exist but are not writable are not refused
    /// here: opening creates nothing then, reads still work, and a write fails with a
    /// message naming the file (`readOnlyReason`). (Another process may change the
    /// files between check and open; SQLite's own errors still cover that window.)
    private static func refuseBeforeOpening(path: String, create: Bool, readOnly: Bool) throws(HistoryError) {
        var info = stat()
        // A missing file is `create`'s business (or refused above); stat follows links.
        guard stat(path, &info) == 0 else { return }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            throw .cannotOpen(path: path, reason: "it is \(Destination.kindName(info.st_mode)), not a regular file "
                              + "(a palr history database is a regular file)")
        }
        if !create && info.st_size == 0 {
            // SQLite would take a 0-byte file for a new database and write the schema
            // into it; a caller that must not create a store has been given the wrong file.
            // (A committed store is never 0 bytes: switching to WAL writes the header page,
            // and SQLite itself discards a -wal beside a 0-byte file.)
            throw .notAHistoryDatabase(path: path, reason: "the file is empty (0 bytes); create a store with "
                                       + "`palr history --db \(path) add --create-profile --profile NAME ITEM…` or "
                                       + "`palr history --db \(path) import …`")
        }
        if !readOnly, let problem = unwritableFile(of: path, existingWAL: false) {
            throw .readOnly(path: path, operation: "open", reason: problem + "; nothing was opened or created")
        }
        if readOnly, let problem = foreignWALFilesReadingWouldCreate(path: path, owner: info.st_uid) {
            throw .cannotOpen(path: path, reason: problem)
        }
    }

    /// Why reading `path` read-only would lock its owner out, or nil when it would not.
    /// SQLite needs `-wal` and `-shm` to read a WAL database and creates the missing
    /// ones even on a read-only connection (and leaves them: it cannot checkpoint),
    /// owned by this user with the database's mode. When this process cannot write the
    /// database and is not its owner, those files then belong to someone the owner's
    /// writes cannot write as, and in a sticky folder (like /tmp) the owner cannot even
    /// delete them. Not refused: this user owns the file (the files are the owner's
    /// then), root (SQLite gives the files it creates as root the database's owner),
    /// both files exist (nothing is created), or the folder is closed to this user
    /// (nothing can be created; SQLite's own open decides).
    private static func foreignWALFilesReadingWouldCreate(path: String, owner: uid_t) -> String? {
        // A store root owns cannot be locked: root writes whatever the files' owners.
        guard geteuid() != 0, owner != geteuid(), owner != 0, accessDenied(path, W_OK) != nil else { return nil }
        let target = resolvedPath(path)
        let missing = [target + "-wal", target + "-shm"].filter { accessDenied($0, F_OK) != nil }
        guard !missing.isEmpty, accessDenied(Self.folder(of: target), W_OK | X_OK) == nil else { return nil }
        let files = missing.joined(separator: " and ")
        return "this user (uid \(geteuid())) cannot write it (it belongs to uid \(owner)), and reading it as this "
            + "user would create \(files) owned by this user and lock its owner out (the owner's writes would "
            + "fail, and in a sticky folder such as /tmp the owner could not delete \(missing.count == 1 ? "it" : "them")); "
            + "nothing was opened or created: run as the owner, or read a copy (the owner can make one with "
            + "`palr history export`)"
    }

    /// Whether faccessat(AT_EACCESS) works here: glibc implements it with faccessat2,
    /// which older container seccomp profiles answer with EPERM (no fallback then), and
    /// every store would be refused as "not writable". Probed once, on "/".
    static let effectiveAccessWorks = faccessat(AT_FDCWD, "/", F_OK, AT_EACCESS) == 0

    /// The errno with which this process (its effective ids, as the open itself) is
    /// denied `mode` on `file`, or nil when it is allowed or this cannot be told.
    private static func accessDenied(_ file: String, _ mode: Int32) -> Int32? {
        if Self.effectiveAccessWorks { return faccessat(AT_FDCWD, file, mode, AT_EACCESS) == 0 ? nil : errno }
        // Without it, access(2) answers for the real ids, the same ones unless setuid.
        if geteuid() == getuid() && getegid() == getgid() { return access(file, mode) == 0 ? nil : errno }
        return nil   // cannot tell: SQLite's own open decides
    }

    /// The file a symbolic link points to (SQLite keeps -wal and -shm beside it), or `path`.
    private static func resolvedPath(_ path: String) -> String {
        realpath(path, nil).map { resolved in
            defer { free(resolved) }
            return String(cString: resolved)
        } ?? path
    }

    /// The folder holding `path` ("." for a bare file name).
    private static func folder(of path: String) -> String {
        let directory = (path as NSString).deletingLastPathComponent
        return directory.isEmpty ? "." : directory
    }

    /// Which of the database's files this process cannot write, as a reason naming
    /// it, or nil when all can be written: the database, its `-wal` and `-shm`
    /// files when they exist (unless `existingWAL` is false), and its folder when
    /// WAL mode must create them. Checked with the effective user, as the open
    /// itself would be (root passes).
    static func unwritableFile(of path: String, existingWAL: Bool = true) -> String? {
        let denied = accessDenied
        func owner(_ file: String) -> String {
            var info = stat()
            guard stat(file, &info) == 0, info.st_uid != geteuid() else { return "" }
            return ", it belongs to uid \(info.st_uid)"
        }
        if let e = denied(path, W_OK) {
            return "the file \(path) is not writable (\(Destination.describe(e))\(owner(path)))"
        }
        // SQLite follows a symbolic link and keeps -wal and -shm beside the file it points to.
        let target = resolvedPath(path)
        var missing: [String] = []
        for file in [target + "-wal", target + "-shm"] {
            guard denied(file, F_OK) == nil else {
                missing.append(file)
                continue
            }
            if existingWAL, let e = denied(file, R_OK | W_OK) {
                return "its file \(file) is not writable (\(Destination.describe(e))\(owner(file))), and SQLite's "
                    + "WAL mode writes it with the database; make it writable for this user"
            }
        }
        if !missing.isEmpty {
            let folder = Self.folder(of: target)
            if let e = denied(folder, W_OK | X_OK) {
                return "its folder \(folder) is not writable (\(Destination.describe(e))), and SQLite's WAL mode "
                    + "must create \(missing.joined(separator: " and ")) there (make the folder writable, or copy "
                    + "the database to a writable folder)"
            }
        }
        return nil
    }

    /// Finalizes all statements and closes the handle. The last connection to
    /// close checkpoints the WAL into the database file and removes it.
    func close() {
        statements.removeAll()
        if let handle { sqlite3_close_v2(handle) }
        handle = nil
    }

    var isOpen: Bool { handle != nil }

    /// Whether writes will fail: opened read-only, or SQLite fell back to
    /// read-only because the file is not writable.
    var isReadOnly: Bool { readOnly || handle.map { sqlite3_db_readonly($0, "main") == 1 } ?? true }

    /// The error SQLite reports for the last failed call on this connection.
    func lastError(_ rc: Int32) -> SQLiteError {
        guard let handle else { return SQLiteError(code: SQLITE_MISUSE, message: "the history store is closed") }
        let code = sqlite3_extended_errcode(handle)
        let message = String(cString: sqlite3_errmsg(handle))
        // sqlite3_step returns the primary code; the handle holds the extended one.
        return SQLiteError(code: (code & 0xff) == (rc & 0xff) ? code : rc, message: message,
                           systemErrno: sqlite3_system_errno(handle))
    }

    // MARK: statements

    /// A cached prepared statement for `sql`, reset and ready to bind.
    func prepare(_ sql: String) throws -> Statement {
        if let cached = statements[sql] {
            cached.reset()  // in case an error left it mid-way
            return cached
        }
        guard let handle else { throw SQLiteError(code: SQLITE_MISUSE, message: "the history store is closed") }
        var stmt: OpaquePointer?
        let rc = sqlite3_prepare_v3(handle, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &stmt, nil)
        guard rc == SQLITE_OK, let stmt else { throw lastError(rc) }
        let statement = Statement(handle: stmt, connection: self)
        statements[sql] = statement
        return statement
    }

    /// Runs one or more SQL statements without parameters or results.
    func exec(_ sql: String) throws {
        guard let handle else { throw SQLiteError(code: SQLITE_MISUSE, message: "the history store is closed") }
        let rc = sqlite3_exec(handle, sql, nil, nil, nil)
        if rc != SQLITE_OK { throw lastError(rc) }
    }

    /// The first column of the first row of `sql` as an integer (0 if no row).
    func scalar(_ sql: String) throws -> Int64 {
        let statement = try prepare(sql)
        defer { statement.reset() }
        return try statement.step() ? statement.int64(0) : 0
    }

    /// The first column of the first row of `sql` as text ("" if no row).
    func scalarText(_ sql: String) throws -> String {
        let statement = try prepare(sql)
        defer { statement.reset() }
        return try statement.step() ? statement.text(0) : ""
    }

    /// Rows changed by the last INSERT, UPDATE or DELETE.
    var changes: Int64 { handle.map { sqlite3_changes64($0) } ?? 0 }

    /// The rowid of the last INSERT.
    var lastInsertRowID: Int64 { handle.map { sqlite3_last_insert_rowid($0) } ?? 0 }

    var inTransaction: Bool { handle.map { sqlite3_get_autocommit($0) == 0 } ?? false }

    // MARK: transactions

    /// Runs `body` in one write transaction (`BEGIN IMMEDIATE`), retried as a
    /// whole while the database is busy. `body` must only change the database.
    func write<T>(_ operation: String, _ body: () throws -> T) throws -> T {
        try run(operation) {
            try transaction("BEGIN IMMEDIATE", body)
        }
    }

    /// Runs `body` in one read transaction: every statement sees one snapshot.
    func read<T>(_ operation: String, _ body: () throws -> T) throws -> T {
        try run(operation) {
            try transaction("BEGIN", body)
        }
    }

    /// Runs `body` outside an explicit transaction (for PRAGMAs that refuse to
    /// run inside one), with the same locking, retries and error mapping.
    func run<T>(_ operation: String, _ body: () throws -> T) throws -> T {
        lock.lock()
        defer { lock.unlock() }
        let deadline = Date().addingTimeInterval(busyTimeout)
        var pause = 0.001
        while true {
            do {
                return try body()
            } catch let error as SQLiteError where error.isBusy && Date() < deadline {
                Thread.sleep(forTimeInterval: pause)
                pause = min(pause * 2, 0.05)
            } catch let error as SQLiteError {
                throw mapped(error, operation: operation)
            }
        }
    }

    private func transaction<T>(_ begin: String, _ body: () throws -> T) throws -> T {
        try exec(begin)
        do {
            let result = try body()
            try exec("COMMIT")
            return result
        } catch {
            // A statement an error left mid-way would keep its snapshot open.
            for statement in statements.values { statement.reset() }
            // SQLite may already have rolled back (SQLITE_FULL, SQLITE_IOERR).
            if inTransaction { try? exec("ROLLBACK") }
            throw error
        }
    }

    /// Gives a raw SQLite failure the store's context and a typed case.
    func mapped(_ error: SQLiteError, operation: String) -> HistoryError {
        switch error.primaryCode {
        case SQLITE_BUSY, SQLITE_LOCKED:
            return .busy(path: path, operation: operation, waitedSeconds: busyTimeout)
        case SQLITE_FULL:
            return .diskFull(path: path, operation: operation)
        case SQLITE_IOERR where error.systemErrno == ENOSPC || error.systemErrno == EDQUOT:
            // SQLite reports a full disk as SQLITE_FULL only for writes to the database and
            // its WAL; sizing the -shm file (SQLITE_IOERR_SHMSIZE) and other I/O fail so.
            return .diskFull(path: path, operation: operation)
        case SQLITE_NOTADB:
            return .notAHistoryDatabase(path: path, reason: error.message)
        case SQLITE_CORRUPT:
            return .corrupt(path: path, reason: error.message)
        case SQLITE_READONLY:
            return .readOnly(path: path, operation: operation, reason: readOnlyReason(error))
        case SQLITE_CANTOPEN:
            let cause = error.systemErrno == 0 ? "" : " (\(String(cString: strerror(error.systemErrno))))"
            return .cannotOpen(path: path, reason: "\(operation): \(error.message)\(cause)")
        default:
            return .sqlite(path: path, operation: operation, code: error.code, message: error.message)
        }
    }

    /// Why SQLite refused to write (or, in WAL mode, to read), from the
    /// extended SQLITE_READONLY_* code.
    private func readOnlyReason(_ error: SQLiteError) -> String {
        let folder = (path as NSString).deletingLastPathComponent
        switch error.code >> 8 {
        case 1:  // SQLITE_READONLY_RECOVERY
            return "its write-ahead log \(path)-wal needs recovery, which needs write access"
        case 2, 5:  // SQLITE_READONLY_CANTLOCK, SQLITE_READONLY_CANTINIT
            return "the shared-memory file \(path)-shm is not writable (SQLite's WAL mode needs it)"
        case 4:  // SQLITE_READONLY_DBMOVED
            return "the file was moved or deleted while it was open"
        case 6:  // SQLITE_READONLY_DIRECTORY
            return "permission denied: its folder \(folder.isEmpty ? "." : folder) is not writable, and SQLite's WAL "
                + "mode must create \(path)-wal and \(path)-shm there (make the folder writable, or copy the "
                + "database to a writable folder)"
        default:
            if readOnly { return "it was opened read-only" }
            // Name the file that is not writable: the -wal or -shm file (say, left by
            // another user) denies writes as surely as the database file does.
            return Self.unwritableFile(of: path)
                ?? "SQLite could not write \(path) or its -wal and -shm files (\(error.message))"
        }
    }
}
