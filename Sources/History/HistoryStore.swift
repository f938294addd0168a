// The history store: profiles, their interactions, and results derived from
// them, in one SQLite database (WAL, synchronous=FULL).
import FileSafety
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A palr history database. Cheap to copy (copies share one connection);
/// safe to use from several threads (calls are serialised). Several processes
/// may open the same file: SQLite's locks coordinate them, and calls wait up
/// to `Options.busyTimeout` for another process's write to finish.
public struct HistoryStore: Sendable {
    /// How a store is opened.
    public struct Options: Sendable {
        /// Create the file (and schema) when it does not exist. When false, the
        /// file must already be a store: a missing or empty (0-byte) file is
        /// refused before it is opened, so nothing is created or written.
        public var createIfMissing: Bool
        /// Seconds a call may wait for another connection's lock before it
        /// fails with `HistoryError.busy`.
        public var busyTimeout: Double
        /// When a commit reaches the disk.
        public var durability: Durability
        /// Caps the database at this many pages (emulates a full disk in tests).
        public var maxPageCount: Int?
        /// Open with SQLITE_OPEN_READONLY: every write fails with
        /// `HistoryError.readOnly`, and nothing is created (`createIfMissing`
        /// is ignored). Works on a file the process cannot write when SQLite can
        /// use `FILE-wal` and `FILE-shm` without locking the file's owner out:
        /// both exist, or this process owns the file (or is root) and the folder
        /// is writable so SQLite can create them (it leaves them there). When
        /// another user's file lacks either and the folder is writable, SQLite
        /// would create them as this user and the owner's writes would fail, so
        /// the open is refused first (`HistoryError.cannotOpen`, nothing created).
        /// When the folder is not writable either, SQLite's own open decides (it
        /// fails with `HistoryError.readOnly` naming the folder if it needs them).
        public var readOnly: Bool

        public init(createIfMissing: Bool = true, busyTimeout: Double = 30, durability: Durability = .powerLossSafe,
                    maxPageCount: Int? = nil, readOnly: Bool = false) {
            self.createIfMissing = createIfMissing
            self.busyTimeout = busyTimeout
            self.durability = durability
            self.maxPageCount = maxPageCount
            self.readOnly = readOnly
        }
    }

    /// The SQLite `synchronous` setting.
    public enum Durability: String, Sendable {
        /// `synchronous=FULL`: the WAL is fsynced at every commit. A commit that
        /// returned survives a power cut. The default.
        case powerLossSafe = "FULL"
        /// `synchronous=NORMAL`: fsync only at checkpoints. Consistent after a
        /// power cut, but the last commits before it may be rolled back. For
        /// benchmarks and throw-away databases.
        case crashSafe = "NORMAL"
    }

    /// Retention cap of a new database: interactions kept per profile.
    public static let defaultRetentionCap = 1000

    /// Largest accepted timestamp: 9999-12-31T23:59:59Z in Unix seconds. A
    /// larger number is almost surely milliseconds given as seconds.
    public static let maxTimestamp: Int64 = 253_402_300_799

    let connection: Connection

    /// The database file.
    public var path: String { connection.path }

    /// The schema upgrade this open made, or nil when the database already had
    /// this build's version, was created by it, or was upgraded by another
    /// connection meanwhile. The library does not print; a command line tells
    /// its user from this (older builds cannot open the file after it).
    public let schemaUpgrade: SchemaUpgrade?

    /// A database taken from an older schema version to this build's.
    public struct SchemaUpgrade: Hashable, Sendable {
        /// The version the file had (1 or more: creating a new file is no upgrade).
        public let from: Int
        /// The version it has now (this build's).
        public let to: Int
    }

    /// Opens (or creates) the database at `path` and brings its schema up to date.
    /// An existing path that is not a regular file is refused, and so, unless
    /// `options.readOnly`, is a database file this process cannot write, or whose
    /// folder it cannot write when the `-wal` and `-shm` files must be created
    /// there (`HistoryError.readOnly` naming which), and, with `options.readOnly`,
    /// another user's file whose `-wal` or `-shm` the open would create as this user
    /// (`HistoryError.cannotOpen`): all before anything is opened, so a refusal
    /// creates no file. `schemaUpgrade` tells whether the open upgraded the schema.
    ///
    /// On a disk too full for SQLite's shared-memory file (`FILE-shm`, 32 KiB, which WAL
    /// mode needs to open at all), an existing store is opened in exclusive locking mode
    /// instead, which keeps that index in memory: reads work (and `recommend` can still
    /// rank), but the connection holds the file's lock until it is closed, so other
    /// processes wait for it (`openedExclusively` tells; the CLI notes it).
    public init(path: String, options: Options = Options()) throws {
        guard !path.isEmpty, !path.hasPrefix(":memory:"), !path.hasPrefix("file:") else {
            throw HistoryError.invalidArgument("history database path must be a file path, not '\(path)'")
        }
        if options.createIfMissing && !options.readOnly {
            _ = try Self.createAtomically(path: path, options: options) { _ in () }
        }
        let existed = FileManager.default.fileExists(atPath: path)
        // What `path` leads to before the open (for the read-only fallback below).
        let before = (try? Destination.target(of: path)) ?? path
        do {
            (connection, schemaUpgrade) = try Self.open(path: path, options: options, exclusive: false)
            openedExclusively = false
        } catch HistoryError.diskFull(_, "open") where existed && !options.readOnly && options.maxPageCount == nil {
            // (Read-only: exclusive mode needs a write lock, which a read-only open cannot
            // take; the disk-full error stands.)
            (connection, schemaUpgrade) = try Self.open(path: path, options: options, exclusive: true)
            openedExclusively = true
        } catch where options.readOnly && Connection.onReadOnlyFileSystem(path) && !Connection.hasWALContent(target: before) {
            // A store on a read-only file system, closed cleanly (no -wal content): WAL mode
            // cannot create its -shm there, so the normal open failed. Opened as immutable
            // instead — only after that failure: a read-only mount (a bind mount, NFS) may
            // still be written through another, and then the normal open works.
            (connection, schemaUpgrade) = try Self.open(path: path, options: options, exclusive: false, immutable: true)
            openedExclusively = false
        }
        // Resolved once, after the open: a dangling link now leads to the store SQLite
        // created through it (resolved before, the reserve went beside the link), and a
        // link retargeted later must not point the reserve elsewhere.
        target = (try? Destination.target(of: path)) ?? before
        makesReserve = true
        shareCompanionFiles()
        if !options.readOnly {
            // What a killed creation left (its temporary, possibly a second name of this
            // very store; the reserve's): removed as the next creation would.
            _ = AtomicFile.removeStaleTemporaries(of: [target, reservePath])
            ensureReserve()
        }
    }

    /// SQLite creates `-wal` and `-shm` as the user who opens the store first, with the
    /// database's permission bits but that user's group. When that group is not the
    /// store's (a second user who may write a group-writable store, or an owner whose
    /// primary group is not the store's), the other users of the store's group can no
    /// longer open it, even after that process ends if it was killed. So the files this
    /// user owns get the store's group (a member of it may give it; otherwise nothing
    /// changes). Through an O_PATH handle only: closing an ordinary descriptor of a file
    /// drops every POSIX lock this process holds on it, SQLite's locks on `-shm` included
    /// (another process then took itself for the first user, reset the shared memory,
    /// and this one died of SIGBUS).
    // Linux's O_PATH and AT_EMPTY_PATH (the same on x86_64 and aarch64), which Swift's
    // Glibc module does not export (they need _GNU_SOURCE).
    private static let openPath: Int32 = 0o10_000_000
    private static let atEmptyPath: Int32 = 0x1000

    func shareCompanionFiles() {
        var store = stat()
        guard stat(target, &store) == 0 else { return }
        for suffix in ["-wal", "-shm"] {
            // O_PATH: a handle to the name itself (not followed), checked and changed
            // through the same handle, so a file swapped in meanwhile is never changed;
            // closing an O_PATH descriptor releases no POSIX lock.
            let fd = Glibc.open(target + suffix, Self.openPath | O_NOFOLLOW | O_CLOEXEC)
            guard fd >= 0 else { continue }
            var info = stat()
            if fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFREG, info.st_uid == geteuid(),
               info.st_gid != store.st_gid {
                _ = fchownat(fd, "", uid_t.max, store.st_gid, Self.atEmptyPath)   // uid -1: the owner stays
            }
            Glibc.close(fd)
        }
    }

    // MARK: space for deletions on a full disk

    /// The smallest `FILE-reserve`, the space kept so that a forget or compact still works
    /// on a full disk (a deletion appends the pages it changes to the WAL, so it needs
    /// free space too): 1 MiB, 256 pages.
    public static let reserveBytes = 1 << 20

    /// The largest reserve: 16 MiB. A store up to about this size keeps room for a
    /// deletion that changes every one of its pages; in a larger store, a deletion of more
    /// than about 4,000 pages (an item forgotten across thousands of profiles) can still
    /// fail as disk full.
    public static let reserveCeiling = 16 << 20

    /// The reserve a store of `storeBytes` keeps: room for a WAL holding every page of the
    /// store (each frame is a page and a 24-byte header; 1/128 covers pages of 4 KiB and
    /// up) and the WAL's header, in whole MiB between `reserveBytes` and `reserveCeiling`.
    public static func reserveBytes(forStoreOf storeBytes: Int64) -> Int {
        let needed = min(max(0, storeBytes), Int64(reserveCeiling)) / 128 * 129 + (64 << 10)
        let mib = Int64(reserveBytes)
        return Int(min(Int64(reserveCeiling), max(mib, (needed + mib - 1) / mib * mib)))
    }

    /// What a reserve starts with: `usingReserve` deletes only a file that has it (and the
    /// right size and owner), never another file that happens to have the name.
    static let reserveMagic = Array("palr history reserve 1\n".utf8)

    /// `FILE-reserve` (beside the file a symbolic link `path` pointed to at open, where
    /// SQLite keeps the WAL): allocated, only its first line written, owned by the store;
    /// removed to make room when a deletion finds the disk full, and made again at the
    /// next chance. Made by every open that may write.
    public var reservePath: String { target + "-reserve" }

    /// The database file itself: `path`, or the file a symbolic link `path` named at open
    /// (SQLite keeps the WAL and shared memory beside it; the reserve goes there too).
    let target: String

    /// Whether this store keeps a reserve: false only while it is built under a temporary name.
    let makesReserve: Bool

    /// The files beside a store that belong to it: SQLite's WAL, shared memory and
    /// rollback journal, and the reserve.
    public static let companionSuffixes = ["-wal", "-shm", "-journal", "-reserve"]

    /// Makes `FILE-reserve` if it is missing, or resizes ours to what the store's size
    /// asks for now (`reserveBytes(forStoreOf:)`: it grows with the store and shrinks after
    /// a compact). Best effort: when the folder cannot be written or the disk has no room,
    /// the reserve stays as it is or there is none (and the next open tries again).
    /// Built whole (allocated, marker written) under a temporary name and hard-linked into
    /// place, so the reserve's name never shows a file without its marker (a kill between
    /// creating and marking one left a file that no later open would free or replace); the
    /// link never replaces or follows anything already at that path.
    func ensureReserve() {
        guard makesReserve else { return }
        // The store's size: its file, or its pages when the WAL still holds the newest.
        let pages = (try? connection.run("size the reserve") {
            try connection.scalar("PRAGMA page_count") * connection.scalar("PRAGMA page_size")
        }) ?? 0
        let wanted = Self.reserveBytes(forStoreOf: max(fileSize(target), pages))
        var info = stat()
        guard lstat(reservePath, &info) != 0 && errno == ENOENT else { return resizeReserve(to: wanted) }
        // A new reserve takes the smallest size, as it always did, and more only by the
        // rule a growth keeps (a reserve freed on a full disk and made again at its full
        // size took the space that rule keeps for the store's writes).
        let bytes = leavesRoom(forReserveOf: wanted, allocating: wanted) ? wanted : Self.reserveBytes
        guard let file = try? AtomicFile(replacing: reservePath, newFileMode: 0o600) else { return }
        guard file.target == reservePath else { return file.discard() }   // a link appeared meanwhile
        do {
            try file.allocate(bytes)   // a smaller file would promise room it has not got
            // The marker goes into the first allocated block: writing it needs no more space.
            try file.write(String(decoding: Self.reserveMagic, as: UTF8.self))
            if try file.commitIfAbsent().unsupported { makeReserveInPlace(bytes) }
        } catch {
            file.discard()
        }
    }

    /// The reserve where the file system has no hard links (exFAT, vfat, some FUSE): made
    /// under its own name (O_EXCL, O_NOFOLLOW: nothing already there is opened or
    /// followed), then allocated and marked; a kill in between leaves a file without the
    /// marker, which no open frees or replaces (that store then has no reserve).
    private func makeReserveInPlace(_ bytes: Int) {
        let fd = Glibc.open(reservePath, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return }
        let made = posix_fallocate(fd, 0, off_t(bytes)) == 0
            && Self.reserveMagic.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) } == Self.reserveMagic.count
        Glibc.close(fd)
        if !made { unlink(reservePath) }
    }

    /// Opens the file at `reservePath` if it is a reserve: a regular file owned by this
    /// user, of `reserveBytes` to `reserveCeiling` bytes (any size between: a growth cut
    /// short by a kill leaves an odd one, resized at the next open), that starts with
    /// `reserveMagic`. Returns the descriptor (the caller closes it) and size.
    private func openReserve(flags: Int32) -> (descriptor: Int32, size: Int)? {
        let fd = Glibc.open(reservePath, flags | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        var info = stat()
        var head = [UInt8](repeating: 0, count: Self.reserveMagic.count)
        guard fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFREG, info.st_uid == geteuid(),
              (off_t(Self.reserveBytes)...off_t(Self.reserveCeiling)).contains(info.st_size),
              head.withUnsafeMutableBytes({ pread(fd, $0.baseAddress, $0.count, 0) }) == head.count,
              head == Self.reserveMagic else {
            Glibc.close(fd)
            return nil
        }
        return (fd, Int(info.st_size))
    }

    /// Resizes our reserve to `wanted` bytes. It grows only while as much space as it
    /// then holds stays free for the store's own writes (`leavesRoom`); a failed growth is
    /// undone.
    private func resizeReserve(to wanted: Int) {
        // Opened for writing only when it is a regular file (openReserve checks again on
        // the descriptor): never a device or FIFO someone put at the name.
        var info = stat()
        guard lstat(reservePath, &info) == 0, info.st_mode & S_IFMT == S_IFREG,
              info.st_size != off_t(wanted), let (fd, size) = openReserve(flags: O_RDWR) else { return }
        defer { Glibc.close(fd) }
        if wanted < size {
            _ = ftruncate(fd, off_t(wanted))
        } else if wanted > size && leavesRoom(forReserveOf: wanted, allocating: wanted - size) {
            if posix_fallocate(fd, 0, off_t(wanted)) != 0 { _ = ftruncate(fd, off_t(size)) }
        }
    }

    /// Whether a reserve of `bytes`, `allocating` of them still to be allocated, leaves as
    /// much space free as it holds (a reserve that filled the disk would cause the failures
    /// it is there to undo). The free space is this user's, saturating (a file system that
    /// reports more than Int64 holds has room).
    private func leavesRoom(forReserveOf bytes: Int, allocating: Int) -> Bool {
        var disk = statvfs()
        guard statvfs(target, &disk) == 0 else { return false }
        let (free, overflow) = Int64(clamping: disk.f_bavail).multipliedReportingOverflow(by: Int64(clamping: disk.f_frsize))
        return overflow || free - Int64(allocating) >= Int64(bytes)
    }

    /// Deletes the reserve if the file at `reservePath` is one (`openReserve`). Returns
    /// whether it did.
    func releaseReserve() -> Bool {
        guard let (fd, _) = openReserve(flags: O_RDONLY) else { return false }
        defer { Glibc.close(fd) }
        return unlink(reservePath) == 0
    }

    /// Runs a write that makes room (a deletion, a lower cap): if it fails because the
    /// disk is full and there is a reserve, frees the reserve and runs `body` once more,
    /// then tries to make the reserve again. `body` must be one transaction, rolled back
    /// when it fails, so that running it again is running it once.
    private func usingReserve<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch HistoryError.diskFull(let path, let operation) {
            guard releaseReserve() else { throw HistoryError.diskFull(path: path, operation: operation) }
            defer { ensureReserve() }
            return try body()
        }
    }

    /// Opens the store at `path` as `init(path:options:)` does and makes `firstWrite` the
    /// first thing written to it. When the store is missing (and `options` may create it),
    /// `firstWrite` runs on the store while it is still being built under its temporary
    /// name, and only the result (schema and those writes, checkpointed into the file) gets
    /// the store's name: a kill or a failure before the end leaves no store, and a store
    /// that appears never lacks what `firstWrite` wrote (before, it was created empty and
    /// then written, and a kill between left an empty store where there was none). When
    /// another process creates the store meanwhile, or the file system has no hard links,
    /// the temporary is dropped and `firstWrite` runs again on the store opened as usual,
    /// so it must be a write that may run twice from the start (one transaction, its input
    /// readable again: `record`, `importInput` of a file or of memory).
    public static func open<T>(path: String, options: Options = Options(),
                               firstWrite: (HistoryStore) throws -> T) throws -> (store: HistoryStore, result: T) {
        if options.createIfMissing && !options.readOnly,
           let built = try createAtomically(path: path, options: options, firstWrite: firstWrite) {
            // The store exists with the write in it: a failure to open it now must say so,
            // or a user would run the (not idempotent) write again.
            do { return (try HistoryStore(path: path, options: options), built) } catch {
                throw HistoryError.cannotOpen(path: path, reason: "it was created with the write in it, "
                                              + "but opening it again failed: \(error)")
            }
        }
        let store = try HistoryStore(path: path, options: options)
        return (store, try firstWrite(store))
    }

    /// The store being built under the temporary name `temporary` (`open(path:options:firstWrite:)`):
    /// no reserve (the store's open makes one beside the store once it has its name). Its
    /// `path` is the store's name (for messages), `target` the temporary: a first write that
    /// measured files (`compact`, `stats`) would have to use `target`.
    private init(building connection: Connection, at temporary: String) {
        self.connection = connection
        schemaUpgrade = nil
        openedExclusively = false
        target = temporary
        makesReserve = false
    }

    /// A missing store is built whole under a temporary name in its folder (schema, WAL
    /// mode, `firstWrite`'s writes, checkpointed into the file) and then hard-linked into place: `link` fails if
    /// the name has appeared meanwhile (another process created the store first, and the
    /// open goes on with that one). So a creation that fails (a full disk, a kill) leaves
    /// nothing under the store's name; before, SQLite created the file first, and a full
    /// disk left it empty. A killed creation's temporary is removed by the next creation
    /// of the same name, as an export's is. Where this cannot work (the folder refuses a
    /// new file, no hard links, any failure but a full disk) nothing is left and the open
    /// goes on as before: SQLite creates the store in place and reports its own errors.
    /// New stores keep SQLite's permission bits, 0644 less the umask. Returns
    /// `firstWrite`'s result when the store was built with it and linked, otherwise nil.
    /// Throws what `firstWrite` throws (nothing is then left).
    private static func createAtomically<T>(path: String, options: Options,
                                            firstWrite: (HistoryStore) throws -> T) throws -> T? {
        var info = stat()
        guard lstat(path, &info) != 0 && errno == ENOENT else { return nil }   // exists (or a dangling link)
        let file: AtomicFile
        do { file = try AtomicFile(replacing: path, newFileMode: 0o644) } catch { return nil }
        defer { file.discard() }   // nothing once linked
        // SQLite's files beside the temporary are this process's too (its name is unique).
        let companions = ["-wal", "-shm", "-journal"].map { file.temporary + $0 }
        let registrations = companions.map { SignalCleanup.register($0) }
        defer {
            for registration in registrations { SignalCleanup.unregister(registration) }
            for companion in companions { _ = unlink(companion) }
        }
        // Without hard links the temporary could never take the store's name, and the first
        // write would run here for nothing and then again in place (a whole import, twice,
        // on an exFAT stick): probed first, under the `-journal` name, which SQLite does not
        // use yet and which is registered and cleaned up with the other companions.
        let probe = file.temporary + "-journal"
        if link(file.temporary, probe) != 0 {
            if [EPERM, EOPNOTSUPP, ENOSYS, EXDEV].contains(errno) { return nil }
        } else {
            unlink(probe)
        }
        // The temporary's flock tells another process's cleanup that it is alive (its pid
        // alone cannot, from another PID namespace), for as long as the first write runs (a
        // whole import). Kept, except where the file system's client emulates flock with
        // the POSIX locks SQLite takes (NFS, SMB, FUSE): there the two would conflict.
        if Destination.flockMayConflictWithSQLite(file.temporary) { file.unlock() }
        let connection: Connection
        do {
            // Messages name the store, not its temporary.
            (connection, _) = try open(path: file.temporary, options: options, exclusive: false, shownAs: path)
        } catch HistoryError.diskFull {
            throw HistoryError.diskFull(path: path, operation: "create")
        } catch {
            return nil
        }
        defer { connection.close() }
        let result = try firstWrite(HistoryStore(building: connection, at: file.temporary))
        do {
            // The schema and writes into the file itself: the -wal does not follow the link.
            let busy = try connection.run("create") { try connection.scalar("PRAGMA wal_checkpoint(TRUNCATE)") }
            connection.close()
            guard busy == 0 else { return nil }
        } catch HistoryError.diskFull {
            throw HistoryError.diskFull(path: path, operation: "create")
        } catch {
            return nil
        }
        // Linked, or someone else's store has the name, or no hard links here: the open
        // follows either way (a failed link leaves nothing to open, and SQLite then meets
        // and names the problem itself).
        guard let linked = try? file.commitIfAbsent().linked, linked else { return nil }
        return result
    }

    /// The connection, its pragmas and the schema check (and migration) of `init`.
    private static func open(path: String, options: Options, exclusive: Bool, immutable: Bool = false,
                             shownAs: String? = nil) throws -> (Connection, SchemaUpgrade?) {
        let connection = try Connection(path: path, create: options.createIfMissing, readOnly: options.readOnly,
                                        immutable: immutable, busyTimeout: options.busyTimeout, shownAs: shownAs)
        // A failure below closes the connection (deinit) before any retry opens another.
        try connection.run("open") {
            // Before the first read: SQLite then never maps the -shm file.
            if exclusive { try connection.exec("PRAGMA locking_mode = EXCLUSIVE") }
            try connection.exec("""
                PRAGMA foreign_keys = ON;
                PRAGMA synchronous = \(options.durability.rawValue);
                PRAGMA secure_delete = FAST;
                PRAGMA journal_size_limit = 4194304;
                PRAGMA cache_size = -8192;
                """)
            if let pages = options.maxPageCount {
                try connection.exec("PRAGMA max_page_count = \(max(1, pages))")
            }
        }
        if options.readOnly {
            // migrate() would create the schema of an empty file; say why it
            // cannot. One read transaction: both values from one snapshot.
            let empty = try connection.read("open") {
                let version = try connection.scalar("PRAGMA user_version")
                let objects = try connection.scalar("SELECT count(*) FROM sqlite_schema")
                return version == 0 && objects == 0
            }
            if empty {
                throw HistoryError.readOnly(path: path, operation: "open", reason: "the file is empty (no palr "
                                            + "schema yet), and creating the schema needs write access")
            }
        }
        let upgrade = try connection.migrate().map { SchemaUpgrade(from: $0, to: schemaVersion) }
        return (connection, upgrade)
    }

    /// True when the disk was too full for SQLite's shared-memory file and the store was
    /// opened in exclusive locking mode: other processes wait until this one closes it.
    public let openedExclusively: Bool

    /// Whether writes fail with `HistoryError.readOnly`: opened with
    /// `Options.readOnly`, or the file became unwritable between the check before
    /// opening (which refuses a file this process cannot write) and the open
    /// (SQLite then opens it read-only by itself). False when only an existing
    /// `-wal` or `-shm` file is not writable: writes then fail naming that file.
    public var isReadOnly: Bool {
        connection.lock.lock()
        defer { connection.lock.unlock() }
        return connection.isReadOnly
    }

    /// Closes the database now (the last connection to close also checkpoints
    /// the WAL into the main file and deletes it). Later calls fail.
    public func close() {
        connection.lock.lock()
        defer { connection.lock.unlock() }
        connection.close()
    }

    // MARK: profiles

    /// Creates a profile; returns false when it already existed.
    @discardableResult
    public func createProfile(_ name: String) throws -> Bool {
        if let problem = Validation.problem(name, as: "profile name") { throw HistoryError.invalidArgument(problem) }
        return try connection.write("create profile") {
            if try lookupProfile(name) != nil { return false }
            _ = try insertProfile(name)
            return true
        }
    }

    /// All profiles, by name, with the extent of their histories.
    public func profiles() throws -> [ProfileInfo] {
        try connection.read("list profiles") {
            let statement = try connection.prepare("""
                SELECT p.name, p.created_at, count(i.profile), min(i.ts), max(i.ts)
                FROM profiles AS p LEFT JOIN interactions AS i ON i.profile = p.id
                GROUP BY p.id ORDER BY p.name
                """)
            defer { statement.reset() }
            var result: [ProfileInfo] = []
            while try statement.step() {
                result.append(ProfileInfo(name: statement.text(0), interactions: statement.int(2),
                                          firstTimestamp: statement.optionalInt64(3),
                                          lastTimestamp: statement.optionalInt64(4), createdAt: statement.int64(1)))
            }
            return result
        }
    }

    // MARK: recording

    /// Records one interaction; returns its id. The profile must exist unless
    /// `createProfile` is true.
    @discardableResult
    public func record(_ interaction: NewInteraction, createProfile: Bool = false) throws -> Int64 {
        try record([interaction], createProfiles: createProfile)[0]
    }

    /// Records interactions in one transaction (all or none); returns their
    /// ids in order. Every profile must exist unless `createProfiles` is true.
    /// Profiles that go over the retention cap lose their oldest interactions
    /// in the same transaction.
    @discardableResult
    public func record(_ batch: [NewInteraction], createProfiles: Bool = false) throws -> [Int64] {
        for (index, interaction) in batch.enumerated() {
            if let problem = Validation.problem(interaction) {
                throw HistoryError.invalidArgument(batch.count == 1 ? problem : "interaction \(index + 1): \(problem)")
            }
        }
        if batch.isEmpty { return [] }
        return try connection.write("record") {
            var resolver = IDResolver(store: self, createProfiles: createProfiles, now: Self.now())
            let rows = try resolver.rows(batch)
            let ids = try insert(rows)
            if let cap = try retentionCapValue() {
                for profile in Set(rows.map(\.profile)) { _ = try trim(profile: profile, cap: cap) }
            }
            return ids
        }
    }

    // MARK: reading

    /// The profile's last `limit` interactions (of the given kinds; nil: all
    /// kinds) in time order, oldest first. Interactions with equal timestamps
    /// keep their insertion order.
    public func recent(profile: String, limit: Int = 50, kinds: Set<InteractionKind>? = nil) throws -> [Interaction] {
        guard limit >= 0 else { throw HistoryError.invalidArgument("limit must not be negative (got \(limit))") }
        return try connection.read("read recent history") {
            try fetchRecent(profile: try requireProfile(profile), name: profile, limit: limit, kinds: kinds)
        }
    }

    /// The digest of exactly what `recent(profile:limit:kinds:)` returns: it
    /// changes when, and only when, that history changes.
    public func historyDigest(profile: String, limit: Int = 50, kinds: Set<InteractionKind>? = nil) throws
        -> HistoryDigest {
        HistoryDigest(of: try recent(profile: profile, limit: limit, kinds: kinds))
    }

    /// How many interactions the profile has.
    public func interactionCount(profile: String) throws -> Int {
        try connection.read("count interactions") {
            try count(profile: try requireProfile(profile))
        }
    }

    // MARK: forgetting

    /// Deletes a profile with its interactions, cached results and summary;
    /// returns how many interactions were deleted.
    @discardableResult
    public func forget(profile: String) throws -> Int {
        try scrubbing("forget profile") {
            let id = try requireProfile(profile)
            let removed = try count(profile: id)
            let delete = try connection.prepare("DELETE FROM profiles WHERE id = ?1")
            try delete.bind(1, id)
            try delete.run()
            try deleteOrphanItems()
            return removed
        }
    }

    /// Deletes every interaction with `item`, of one profile or (nil) of all,
    /// and the cached results and summaries derived from those histories;
    /// returns how many interactions were deleted.
    @discardableResult
    public func forget(item: String, profile: String? = nil) throws -> Int {
        try scrubbing("forget item") {
            let profileID = try profile.map { try requireProfile($0) }
            guard let itemID = try lookup("SELECT id FROM items WHERE external_id = ?1", item) else { return 0 }
            let affected = try connection.prepare("""
                SELECT DISTINCT profile FROM interactions WHERE item = ?1 AND (?2 = 0 OR profile = ?2)
                """)
            try affected.bind(1, itemID)
            try affected.bind(2, profileID ?? 0)  // profile ids start at 1
            var profiles: [Int64] = []
            while try affected.step() { profiles.append(affected.int64(0)) }
            affected.reset()
            var removed = 0
            let delete = try connection.prepare("DELETE FROM interactions WHERE profile = ?1 AND item = ?2")
            for id in profiles {
                try delete.bind(1, id)
                try delete.bind(2, itemID)
                try delete.run()
                removed += Int(connection.changes)
                try deleteDerived(profile: id)
            }
            let orphan = try connection.prepare(
                "DELETE FROM items WHERE id = ?1 AND NOT EXISTS (SELECT 1 FROM interactions WHERE item = ?1)")
            try orphan.bind(1, itemID)
            try orphan.run()
            return removed
        }
    }

    /// Runs a deletion with secure_delete=ON (freed bytes are zeroed) and then
    /// truncates the WAL, so the deleted history does not linger in either file.
    /// On a full disk it uses the reserve (`usingReserve`).
    private func scrubbing<T>(_ operation: String, _ body: () throws -> T) throws -> T {
        try usingReserve { try scrubbingOnce(operation, body) }
    }

    private func scrubbingOnce<T>(_ operation: String, _ body: () throws -> T) throws -> T {
        try connection.run(operation) { try connection.exec("PRAGMA secure_delete = ON") }
        defer { try? connection.run(operation) { try connection.exec("PRAGMA secure_delete = FAST") } }
        let result = try connection.write(operation) { () throws -> T in
            let result = try body()
            // Every forget moves the counter, in its own transaction: a summary made from a
            // history read before it is then refused at store time (`forgetCount`).
            try setMeta("forget_count", try nextMeta("forget_count", after: try meta("forget_count") ?? 0))
            return result
        }
        _ = try? checkpoint()
        return result
    }

    // MARK: retention and maintenance

    /// How many forgets (of a profile or an item) this store has run: read it before
    /// reading a history, and pass it to `putProfileSummary(_:ifNoForgetSince:)` so a
    /// summary made from that history is not stored after a forget.
    public func forgetCount() throws -> Int64 {
        try connection.read("read forget count") { try meta("forget_count") ?? 0 }
    }

    /// Interactions kept per profile; nil: unlimited.
    public func retentionCap() throws -> Int? {
        try connection.read("read retention cap") { try retentionCapValue() }
    }

    /// Sets the retention cap (nil: unlimited). It applies from the next write
    /// of each profile, and to all profiles at the next `compact()`. On a full disk it
    /// uses the reserve (`reservePath`).
    public func setRetentionCap(_ cap: Int?) throws {
        if let cap, cap < 1 { throw HistoryError.invalidArgument("retention cap must be at least 1 (got \(cap))") }
        // With the reserve on a full disk: a lower cap is how a full box makes room.
        try usingReserve { try connection.write("set retention cap") { try setMeta("retention_cap", Int64(cap ?? 0)) } }
    }

    /// Trims every profile to the retention cap, drops item ids nothing refers
    /// to, and (with `vacuum`) gives free pages back to the file system and
    /// truncates the WAL. On a full disk it uses the reserve (`reservePath`).
    public func compact(vacuum: Bool = true) throws -> CompactionReport {
        try compact(vacuum: vacuum, newCap: nil)
    }

    /// Sets the retention cap (nil: unlimited) and compacts as `compact(vacuum:)`, the new
    /// cap stored in the trim's own transaction: a kill or an error leaves the old cap with
    /// the untrimmed history or the new cap with the trimmed one (set apart, as
    /// `setRetentionCap` and `compact` do, a kill between them left the new cap over the
    /// untrimmed history).
    public func compact(retentionCap cap: Int?, vacuum: Bool = true) throws -> CompactionReport {
        if let cap, cap < 1 { throw HistoryError.invalidArgument("retention cap must be at least 1 (got \(cap))") }
        return try compact(vacuum: vacuum, newCap: .some(cap))
    }

    /// `newCap`: nil keeps the cap; `.some(nil)` makes it unlimited.
    private func compact(vacuum: Bool, newCap: Int??) throws -> CompactionReport {
        let before = fileSize(path)
        // Two transactions, each retried alone with the reserve: the trim, then the vacuum
        // (a retry of both after the trim committed would report nothing trimmed).
        let (trimmed, removedItems) = try usingReserve { try connection.write("compact") {
            if let newCap { try setMeta("retention_cap", Int64(newCap ?? 0)) }
            var trimmed = 0
            if let cap = try retentionCapValue() {
                let over = try connection.prepare("SELECT profile FROM interactions GROUP BY profile HAVING count(*) > ?1")
                try over.bind(1, cap)
                var profiles: [Int64] = []
                while try over.step() { profiles.append(over.int64(0)) }
                over.reset()
                for profile in profiles { trimmed += try trim(profile: profile, cap: cap) }
            }
            return (trimmed, try deleteOrphanItems())
        } }
        var freed = 0
        if vacuum {
            freed = try usingReserve { try connection.run("compact") {
                let free = Int(try connection.scalar("PRAGMA freelist_count"))
                try connection.exec("PRAGMA incremental_vacuum")
                return free - Int(try connection.scalar("PRAGMA freelist_count"))
            } }
            // Housekeeping: the trim and the vacuum are committed whatever this does.
            _ = try? checkpoint()
        }
        ensureReserve()   // sized for the store as it is now
        return CompactionReport(trimmedInteractions: trimmed, removedItems: removedItems, freedPages: freed,
                                databaseBytesBefore: before, databaseBytesAfter: fileSize(path))
    }

    /// Copies the WAL into the database file and truncates it. Returns false
    /// when a reader in another process kept it from finishing.
    @discardableResult
    public func checkpoint() throws -> Bool {
        try connection.run("checkpoint") {
            let statement = try connection.prepare("PRAGMA wal_checkpoint(TRUNCATE)")
            defer { statement.reset() }
            return try statement.step() ? statement.int(0) == 0 : true
        }
    }

    /// SQLite's `PRAGMA integrity_check`: ["ok"] for a sound database.
    public func integrityCheck() throws -> [String] {
        try connection.read("integrity check") {
            let statement = try connection.prepare("PRAGMA integrity_check")
            defer { statement.reset() }
            var lines: [String] = []
            while try statement.step() { lines.append(statement.text(0)) }
            return lines
        }
    }

    /// What is wrong with the store, as lines (empty: nothing found). Beyond what every read
    /// checks: SQLite's `integrity_check` and `foreign_key_check`, and that the interaction
    /// id counter is above every id in use (a counter set back, by another tool or a
    /// restored backup of part of the file, would give new interactions ids already taken).
    /// Reads the whole file: for `palr history check`, not for every open.
    public func check() throws -> [String] {
        try connection.read("check") {
            var problems: [String] = []
            let integrity = try connection.prepare("PRAGMA integrity_check")
            defer { integrity.reset() }
            while try integrity.step() {
                let line = integrity.text(0)
                if line != "ok" { problems.append("integrity: \(line)") }
            }
            // Counted per table and parent (a damaged file can have thousands of such rows).
            let keys = try connection.prepare("PRAGMA foreign_key_check")
            defer { keys.reset() }
            var orphans: [[String]: Int] = [:]   // [table, parent] → rows
            while try keys.step() { orphans[[keys.text(0), keys.text(2)], default: 0] += 1 }
            for (pair, count) in orphans.sorted(by: { $0.key.lexicographicallyPrecedes($1.key) }) {
                problems.append("\(count) row\(count == 1 ? "" : "s") of \(pair[0]) refer\(count == 1 ? "s" : "") to a missing row of \(pair[1])")
            }
            // Items and kinds are not foreign keys (for the speed of imports); reads refuse a
            // row whose item or kind is missing, and this counts them all.
            for (column, table) in [("item", "items"), ("kind", "kinds")] {
                let missing = try connection.scalar(
                    "SELECT count(*) FROM interactions WHERE \(column) NOT IN (SELECT id FROM \(table))")
                if missing > 0 {
                    problems.append("\(missing) interaction\(missing == 1 ? "" : "s") name\(missing == 1 ? "s" : "") "
                                    + "a missing \(column) (no row in \(table))")
                }
            }
            let reused = try connection.scalar(
                "SELECT count(*) FROM (SELECT seq FROM interactions GROUP BY seq HAVING count(*) > 1)")
            if reused > 0 {
                problems.append("\(reused) interaction id\(reused == 1 ? " is" : "s are") used more than once")
            }
            // A missing counter reads as 1 (as `record` reads it); a damaged one is a problem
            // of its own, and the other checks still run.
            let largest = try connection.scalar("SELECT coalesce(max(seq), 0) FROM interactions")
            do {
                let counter = try meta("next_interaction_id") ?? 1
                if largest >= counter {
                    problems.append("the interaction id counter (\(counter)) is not above the largest id in use "
                                    + "(\(largest)): new interactions would get ids already taken "
                                    + "(`palr history check --repair` sets it to \(largest < Int64.max ? "\(largest + 1)" : "nothing: no id is left")))")
                }
            } catch HistoryError.corrupt(_, let reason) {
                problems.append(reason + " (`palr history check --repair` sets it above the ids in use)")
            }
            return problems
        }
    }

    /// Sets the interaction id counter above every id in use when it is not (see `check`);
    /// returns the new value, or nil when it was already above them. One transaction.
    @discardableResult
    public func repairIdCounter() throws -> Int64? {
        try connection.write("repair the id counter") {
            let largest = try connection.scalar("SELECT coalesce(max(seq), 0) FROM interactions")
            // Missing (read as 1) or damaged (not an integer ≥ 1): replaced as well.
            if let counter = try? meta("next_interaction_id") ?? 1, counter > largest { return nil }
            guard largest < Int64.max else {
                throw HistoryError.corrupt(path: path, reason: "an interaction id is the largest integer: no id is left above it")
            }
            try setMeta("next_interaction_id", largest + 1)
            return largest + 1
        }
    }

    /// Counts and sizes.
    public func stats() throws -> HistoryStats {
        var stats = try connection.read("stats") {
            let cap = try retentionCapValue()
            var byKind: [String: Int] = [:]
            let kinds = try connection.prepare("""
                SELECT k.name, count(*) FROM interactions AS i JOIN kinds AS k ON k.id = i.kind GROUP BY k.name
                """)
            while try kinds.step() { byKind[kinds.text(0)] = kinds.int(1) }
            kinds.reset()
            let perProfile = try connection.prepare("""
                SELECT p.name, c.n, (SELECT count(*) FROM (SELECT 1 FROM interactions GROUP BY profile
                                                           HAVING count(*) > ?1))
                FROM (SELECT profile, count(*) AS n FROM interactions GROUP BY profile ORDER BY n DESC LIMIT 1) AS c
                JOIN profiles AS p ON p.id = c.profile
                """)
            try perProfile.bind(1, cap ?? Int.max)
            let hasLargest = try perProfile.step()
            let largest = hasLargest ? perProfile.text(0) : nil
            let largestCount = hasLargest ? perProfile.int(1) : 0
            let overCap = hasLargest && cap != nil ? perProfile.int(2) : 0
            perProfile.reset()
            let times = try connection.prepare("SELECT min(ts), max(ts), count(*) FROM interactions")
            _ = try times.step()
            let (oldest, newest, total) = (times.optionalInt64(0), times.optionalInt64(1), times.int(2))
            times.reset()
            return HistoryStats(
                path: path, schemaVersion: Int(try connection.scalar("PRAGMA user_version")),
                profiles: Int(try connection.scalar("SELECT count(*) FROM profiles")), interactions: total,
                items: Int(try connection.scalar("SELECT count(*) FROM items")), interactionsByKind: byKind,
                oldestTimestamp: oldest, newestTimestamp: newest, largestProfile: largest,
                largestProfileInteractions: largestCount, retentionCap: cap, profilesOverCap: overCap,
                cachedRecommendations: Int(try connection.scalar("SELECT count(*) FROM cached_recommendations")),
                profileSummaries: Int(try connection.scalar("SELECT count(*) FROM profile_summaries")),
                pageSize: Int(try connection.scalar("PRAGMA page_size")),
                pageCount: Int(try connection.scalar("PRAGMA page_count")),
                freePages: Int(try connection.scalar("PRAGMA freelist_count")), databaseBytes: 0, walBytes: 0)
        }
        stats.databaseBytes = fileSize(path)
        stats.walBytes = fileSize(path + "-wal")
        return stats
    }

    // MARK: internals shared by the store's files (call inside a transaction)

    /// One interaction row with its integer keys resolved.
    struct Row {
        var profile: Int64
        var item: Int64
        var kind: Int64
        var value: Double?
        var timestamp: Int64
    }

    /// Inserts rows in order, giving them the next interaction ids.
    func insert(_ rows: [Row]) throws -> [Int64] {
        var next = try meta("next_interaction_id") ?? 1
        let statement = try connection.prepare(
            "INSERT INTO interactions(profile, ts, seq, item, kind, value) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
        var ids: [Int64] = []
        ids.reserveCapacity(rows.count)
        for row in rows {
            try statement.bind(1, row.profile)
            try statement.bind(2, row.timestamp)
            try statement.bind(3, next)
            try statement.bind(4, row.item)
            try statement.bind(5, row.kind)
            try statement.bind(6, row.value)
            try statement.run()
            ids.append(next)
            next = try nextMeta("next_interaction_id", after: next)
        }
        try setMeta("next_interaction_id", next)
        return ids
    }

    func fetchRecent(profile: Int64, name: String, limit: Int, kinds: Set<InteractionKind>?) throws -> [Interaction] {
        let kindNames = kinds.map { $0.map(\.rawValue).sorted() }
        if limit == 0 || kindNames?.isEmpty == true { return [] }
        // LEFT JOINs: a row whose item or kind is missing is reported (`checkedInteraction`),
        // not left out of the history. The plan is the same (interactions is the outer loop).
        var sql = """
            SELECT i.seq, i.ts, it.external_id, k.name, i.value, i.item, i.kind
            FROM interactions AS i LEFT JOIN items AS it ON it.id = i.item LEFT JOIN kinds AS k ON k.id = i.kind
            WHERE i.profile = ?1
            """
        if let kindNames {
            sql += " AND k.name IN (" + (0..<kindNames.count).map { "?\($0 + 3)" }.joined(separator: ", ") + ")"
        }
        sql += " ORDER BY i.ts DESC, i.seq DESC LIMIT ?2"
        let statement = try connection.prepare(sql)
        defer { statement.reset() }
        try statement.bind(1, profile)
        try statement.bind(2, limit)
        for (index, kind) in (kindNames ?? []).enumerated() { try statement.bind(Int32(index + 3), kind) }
        var result: [Interaction] = []
        result.reserveCapacity(min(limit, 1024))
        while try statement.step() {
            result.append(try checkedInteraction(statement, profile: name))
        }
        result.reverse()
        return result
    }

    /// The interaction in the current row of `statement` (columns seq, ts, item's
    /// external id, kind name, value, item id, kind id), checked to be as palr writes
    /// it. SQLite converts whatever another tool stored (a text timestamp reads as 0, a
    /// blob item id as its bytes), and an inner join drops rows whose item or kind is
    /// missing: such a row is reported as damage instead of being shown, exported or
    /// ranked altered, or silently left out.
    func checkedInteraction(_ statement: Statement, profile: String) throws -> Interaction {
        let id = statement.int64(0)
        func damaged(_ what: String) -> HistoryError {
            .corrupt(path: path, reason: "interaction \(statement.isInteger(0) ? "\(id)" : statement.describe(0)) "
                     + "of profile \(Validation.quoted(profile, limit: 80)) \(what)")
        }
        guard statement.isInteger(0) else { throw damaged("has a non-integer id") }
        guard statement.isInteger(1) else { throw damaged("has the timestamp \(statement.describe(1))") }
        if statement.isNull(2) { throw damaged("refers to item id \(statement.describe(5)), which is not in the items table") }
        if statement.isNull(3) { throw damaged("refers to kind id \(statement.describe(6)), which is not in the kinds table") }
        guard let item = statement.validText(2) else { throw damaged("has the item id \(statement.describe(2))") }
        guard let kind = statement.validText(3) else { throw damaged("has the kind name \(statement.describe(3))") }
        // Kinds have been checked on every write since the first schema, so a name that
        // breaks the rules is an edit; it went raw into `list` and unquoted into a CSV
        // export (an escape sequence or a line break in the middle of a row).
        if let problem = InteractionKind(rawValue: kind).problem { throw damaged("has a damaged kind: \(problem)") }
        let value = statement.optionalDouble(4)
        guard statement.isNull(4) || (statement.isFloat(4) && value!.isFinite) else {
            throw damaged("has the value \(statement.describe(4))")
        }
        return Interaction(id: id, profile: profile, item: item, kind: InteractionKind(rawValue: kind), value: value,
                           timestamp: statement.int64(1))
    }

    /// Deletes the profile's oldest interactions beyond `cap`; returns how many.
    func trim(profile: Int64, cap: Int) throws -> Int {
        let statement = try connection.prepare("""
            DELETE FROM interactions WHERE profile = ?1 AND (ts, seq) <
                (SELECT ts, seq FROM interactions WHERE profile = ?1 ORDER BY ts DESC, seq DESC LIMIT 1 OFFSET ?2)
            """)
        try statement.bind(1, profile)
        try statement.bind(2, cap - 1)
        try statement.run()
        return Int(connection.changes)
    }

    func count(profile: Int64) throws -> Int {
        let statement = try connection.prepare("SELECT count(*) FROM interactions WHERE profile = ?1")
        defer { statement.reset() }
        try statement.bind(1, profile)
        return try statement.step() ? statement.int(0) : 0
    }

    func retentionCapValue() throws -> Int? {
        let cap = try meta("retention_cap") ?? Int64(Self.defaultRetentionCap)
        return cap > 0 ? Int(cap) : nil
    }

    func lookupProfile(_ name: String) throws -> Int64? {
        try lookup("SELECT id FROM profiles WHERE name = ?1", name)
    }

    func requireProfile(_ name: String) throws -> Int64 {
        guard let id = try lookupProfile(name) else { throw HistoryError.unknownProfile(name) }
        return id
    }

    func insertProfile(_ name: String) throws -> Int64 {
        let statement = try connection.prepare("INSERT INTO profiles(name, created_at) VALUES (?1, ?2)")
        try statement.bind(1, name)
        try statement.bind(2, Self.now())
        try statement.run()
        return connection.lastInsertRowID
    }

    /// The integer the single-parameter query `sql` returns, if any row.
    func lookup(_ sql: String, _ parameter: String) throws -> Int64? {
        let statement = try connection.prepare(sql)
        defer { statement.reset() }
        try statement.bind(1, parameter)
        return try statement.step() ? statement.int64(0) : nil
    }

    /// A counter or setting in `meta` (nil: no row), checked: palr writes only
    /// integers from 0 up, so anything else there (text, a real, a blob, NULL, a
    /// negative number: another tool's edit, an old backup) is reported as damage
    /// rather than read as 0 by SQLite's conversions (an id counter at 0 handed out
    /// ids already in use; a retention cap of 'abc' meant unlimited).
    func meta(_ key: String) throws -> Int64? {
        let statement = try connection.prepare("SELECT value FROM meta WHERE key = ?1")
        defer { statement.reset() }
        try statement.bind(1, key)
        guard try statement.step() else { return nil }
        let value = statement.int64(0)
        guard statement.isInteger(0), value >= (key == "next_interaction_id" ? 1 : 0) else {
            throw HistoryError.corrupt(path: path, reason: "meta value '\(key)' is \(statement.describe(0)), "
                                       + "not an integer of at least \(key == "next_interaction_id" ? 1 : 0)")
        }
        return value
    }

    /// `meta(key) + 1`, for counters that only grow; a counter at the largest integer
    /// (never reached by counting, so a damaged store) is reported, not wrapped.
    func nextMeta(_ key: String, after value: Int64) throws -> Int64 {
        guard value < Int64.max else {
            throw HistoryError.corrupt(path: path, reason: "meta value '\(key)' is \(value), the largest integer: "
                                       + "it cannot count further")
        }
        return value + 1
    }

    func setMeta(_ key: String, _ value: Int64) throws {
        let statement = try connection.prepare("INSERT OR REPLACE INTO meta(key, value) VALUES (?1, ?2)")
        try statement.bind(1, key)
        try statement.bind(2, value)
        try statement.run()
    }

    /// Deletes a profile's cached recommendations and summary.
    func deleteDerived(profile: Int64) throws {
        for table in ["cached_recommendations", "profile_summaries"] {
            let statement = try connection.prepare("DELETE FROM \(table) WHERE profile = ?1")
            try statement.bind(1, profile)
            try statement.run()
        }
    }

    /// Deletes item ids that no interaction refers to; returns how many.
    @discardableResult
    func deleteOrphanItems() throws -> Int {
        try connection.exec("DELETE FROM items WHERE id NOT IN (SELECT item FROM interactions)")
        return Int(connection.changes)
    }

    static func now() -> Int64 { Int64(Date().timeIntervalSince1970) }
}

/// Maps names to integer ids within one write transaction, creating items and
/// kinds (and profiles, when allowed) that do not exist yet.
struct IDResolver {
    let store: HistoryStore
    let createProfiles: Bool
    let now: Int64
    private var profiles: [String: Int64] = [:]
    private var items: [String: Int64] = [:]
    private var kinds: [String: Int64] = [:]
    private(set) var createdProfiles: [String] = []
    private(set) var createdItems = 0

    init(store: HistoryStore, createProfiles: Bool, now: Int64) {
        self.store = store
        self.createProfiles = createProfiles
        self.now = now
    }

    /// `interactions` with their names resolved to ids.
    mutating func rows(_ interactions: [NewInteraction]) throws -> [HistoryStore.Row] {
        var rows: [HistoryStore.Row] = []
        rows.reserveCapacity(interactions.count)
        for interaction in interactions {
            rows.append(HistoryStore.Row(profile: try profile(interaction.profile), item: try item(interaction.item),
                                         kind: try kind(interaction.kind), value: interaction.value,
                                         timestamp: interaction.timestamp))
        }
        return rows
    }

    /// Profile names met so far, mapped to their ids.
    var profileIDs: [String: Int64] { profiles }

    mutating func profile(_ name: String) throws -> Int64 {
        if let id = profiles[name] { return id }
        var id = try store.lookupProfile(name)
        if id == nil {
            guard createProfiles else { throw HistoryError.unknownProfile(name) }
            id = try store.insertProfile(name)
            createdProfiles.append(name)
        }
        profiles[name] = id
        return id ?? 0
    }

    mutating func item(_ external: String) throws -> Int64 {
        if let id = items[external] { return id }
        let id = try cachedOrInserted(external, lookup: "SELECT id FROM items WHERE external_id = ?1",
                                      insert: "INSERT INTO items(external_id) VALUES (?1)", created: &createdItems)
        items[external] = id
        return id
    }

    mutating func kind(_ kind: InteractionKind) throws -> Int64 {
        if let id = kinds[kind.rawValue] { return id }
        var created = 0
        let id = try cachedOrInserted(kind.rawValue, lookup: "SELECT id FROM kinds WHERE name = ?1",
                                      insert: "INSERT INTO kinds(name) VALUES (?1)", created: &created)
        kinds[kind.rawValue] = id
        return id
    }

    private func cachedOrInserted(_ name: String, lookup: String, insert: String, created: inout Int) throws -> Int64 {
        if let id = try store.lookup(lookup, name) { return id }
        let statement = try store.connection.prepare(insert)
        try statement.bind(1, name)
        try statement.run()
        created += 1
        return store.connection.lastInsertRowID
    }
}

extension HistoryStore {
    /// Why `id` cannot be stored as an item id (empty, longer than 256 bytes, a
    /// control character, a bidirectional control, only whitespace), or nil: the rule
    /// `record` and `import` apply.
    public static func problem(itemID id: String) -> String? { Validation.problem(id, as: "item id") }
}

/// The rules every stored field follows, shared by record() and import.
enum Validation {
    /// Longest profile name or item id, in UTF-8 bytes.
    static let maxNameBytes = StoredNames.maxBytes

    /// Why `name` cannot be stored as a profile name or item id, or nil. Only new
    /// writes are checked: names an older build stored under looser rules are still
    /// found, listed and forgotten.
    static func problem(_ name: String, as what: String) -> String? {
        switch StoredNames.problem(name) {
        case nil: return nil
        case .empty: return "\(what) is empty"
        case .tooLong: return "\(what) is longer than \(maxNameBytes) bytes"
        case .controlCharacter: return "\(what) \(quoted(name)) contains a control character"
        case .bidirectionalControl:
            return "\(what) \(quoted(name)) contains a bidirectional control character (U+202A–U+202E, "
                + "U+2066–U+2069), which makes text display in another order than it is stored"
        case .onlyWhitespace: return "\(what) \(quoted(name)) is only whitespace"
        }
    }

    /// The embedding, override and isolate controls (not the marks U+200E/U+200F).
    static func isBidirectionalControl(_ scalar: Unicode.Scalar) -> Bool { StoredNames.isBidirectionalControl(scalar) }

    /// `text` as a message shows it, on one line whatever it holds: escaped as in
    /// a Swift string literal (C1 controls, bidirectional controls and line or
    /// paragraph separators as `\u{…}` too) between `quote`s, and cut after
    /// `limit` characters (Unicode scalars: a long combining sequence is cut too),
    /// then "…" and the size of the whole text.
    static func quoted(_ text: String, limit: Int = 40, quote: String = "'") -> String {
        var shown = quote
        for (index, scalar) in text.unicodeScalars.enumerated() {
            if index == limit { return shown + "…\(quote) (\(text.utf8.count) bytes)" }
            let category = scalar.properties.generalCategory
            if (0x80...0x9f).contains(scalar.value) || isBidirectionalControl(scalar)
                || category == .lineSeparator || category == .paragraphSeparator {
                shown += "\\u{\(String(scalar.value, radix: 16, uppercase: true))}"
            } else {
                shown += scalar.escaped(asASCII: false)
            }
        }
        return shown + quote
    }

    static func problem(value: Double?) -> String? {
        guard let value, !value.isFinite else { return nil }
        return "value \(value) is not a finite number"
    }

    static func problem(timestamp: Int64) -> String? {
        guard timestamp < 0 || timestamp > HistoryStore.maxTimestamp else { return nil }
        return "timestamp \(timestamp) is out of range (expected Unix seconds, 0...\(HistoryStore.maxTimestamp))"
    }

    static func problem(_ interaction: NewInteraction) -> String? {
        problem(interaction.profile, as: "profile name") ?? problem(interaction.item, as: "item id")
            ?? interaction.kind.problem ?? problem(value: interaction.value)
            ?? problem(timestamp: interaction.timestamp)
    }
}

/// Size of a file in bytes; 0 when it does not exist.
func fileSize(_ path: String) -> Int64 {
    let attributes = try? FileManager.default.attributesOfItem(atPath: path)
    return (attributes?[.size] as? NSNumber)?.int64Value ?? 0
}
