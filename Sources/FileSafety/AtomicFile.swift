// A file replaced atomically: written to a hidden `.NAME.tmp-PID-RANDOM` beside the
// destination (created exclusively, never through a symbolic link, and locked with
// flock until it is renamed or removed), fsynced, checked again, renamed over the
// destination, and the folder fsynced. Temporaries of NAME that a killed writer left
// (its PID not running here, nobody holding the lock) are removed when the next
// writer of NAME starts. Readers see the old
// file or the new one, never a part. Until `commit()` the destination is untouched:
// an error, a dropped writer (`deinit`) or a signal (through `SignalCleanup`, when
// the executable installed its handlers) removes the temporary file.
//
// GGUFWriter keeps its own temporary scheme (`OUT.tmp-PID`, locked) so that a later
// writer can remove what a killed one left; it follows the same destination rules.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Why an atomic write failed.
public enum AtomicFileError: Error, Equatable, CustomStringConvertible {
    /// The destination cannot be replaced by a rename (see `Destination`).
    case destination(DestinationError)
    /// A system call failed; `reason` names it.
    case cannotWrite(path: String, reason: String)

    public var path: String {
        switch self {
        case .destination(let e): return e.path
        case .cannotWrite(let p, _): return p
        }
    }

    public var reason: String {
        switch self {
        case .destination(let e): return e.reason
        case .cannotWrite(_, let r): return r
        }
    }

    public var description: String { "cannot write \(path): \(reason)" }
}

public final class AtomicFile {
    /// The destination as given (for messages).
    public let path: String
    /// The file replaced: `path`, or the file a symbolic link `path` points to.
    public let target: String
    /// Where the data goes until `commit()`.
    public let temporary: String
    /// Temporaries of killed writers of the same name, removed when this one started.
    public let removedStaleTemporaries: [String]
    private var descriptor: Int32
    private var registration: Int?
    private var done = false

    /// Checks `path` (see `Destination.target(of:)`) and creates the temporary file.
    /// An existing destination's permission bits are kept; a new file gets `newFileMode`
    /// (0666 unless given) less the umask.
    public init(replacing path: String, newFileMode: mode_t = 0o666) throws(AtomicFileError) {
        guard !path.isEmpty else { throw .cannotWrite(path: path, reason: "the path is empty") }
        self.path = path
        let target: String
        do { target = try Destination.target(of: path) } catch { throw .destination(error) }
        self.target = target
        var info = stat()
        var mode: mode_t?
        if stat(target, &info) == 0 {
            mode = info.st_mode & 0o7777
        } else if errno != ENOENT {
            throw .cannotWrite(path: path, reason: Destination.describe(errno))
        }
        let (folder, name) = Destination.splitPath(target)
        guard stat(folder, &info) == 0 else {
            let e = errno
            throw .cannotWrite(path: path, reason: "folder \(folder): \(Destination.describe(e))")
        }
        guard info.st_mode & S_IFMT == S_IFDIR else {
            throw .cannotWrite(path: path, reason: "\(folder) is not a directory")
        }
        let prefix = Self.temporaryPrefix(name)
        removedStaleTemporaries = Self.removeStale(in: folder, prefix: prefix)
        var attempt = 0
        while true {
            let suffix = "\(getpid())-" + String(UInt32.random(in: .min ... .max), radix: 16)
            let candidate = Destination.joinPath(folder, prefix + suffix)
            let fd = open(candidate, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, newFileMode)
            if fd >= 0 {
                // Locked while it exists: the mark of a live writer (see removeStale). On a
                // file system without flock the write goes on unlocked; its temporaries
                // are then never taken for stale (removeIfUnlocked needs the lock too).
                _ = flock(fd, LOCK_EX | LOCK_NB)
                temporary = candidate
                descriptor = fd
                break
            }
            let code = errno
            attempt += 1
            if code == EEXIST && attempt < 100 { continue }
            throw .cannotWrite(path: path, reason: "cannot create a file in \(folder): \(Destination.describe(code))")
        }
        // Created exclusively above, so the file is this writer's: safe to remove on a signal.
        registration = SignalCleanup.register(temporary)
        if let mode { _ = fchmod(descriptor, mode) }
    }

    deinit { discard() }

    /// The start of a temporary's name for the destination `name`: cut by bytes, so that
    /// the temporary's stays under NAME_MAX (255 bytes).
    static func temporaryPrefix(_ name: String) -> String {
        "." + String(decoding: Array(name.utf8.prefix(200)), as: UTF8.self) + ".tmp-"
    }

    /// Removes the temporaries that killed writers of `path` (a regular file's path, not
    /// a link) left beside it, as a new writer does when it starts; returns their paths.
    /// For files made once and then only opened (a history store, whose creation a kill
    /// between its link and its temporary's removal leaves with a second name).
    /// `paths` share one folder, read once (a store and its reserve).
    public static func removeStaleTemporaries(of paths: [String]) -> [String] {
        guard let folder = paths.first.map({ Destination.splitPath($0).folder }) else { return [] }
        precondition(paths.allSatisfy { Destination.splitPath($0).folder == folder }, "paths in different folders")
        return removeStale(in: folder, prefixes: paths.map { temporaryPrefix(Destination.splitPath($0).name) })
    }

    /// Removes `folder/PREFIX<pid>-<hex>` files whose pid is not running here and whose
    /// lock nobody holds (a pid may be alive in another PID namespace: the lock tells),
    /// and the `-wal`, `-shm` and `-journal` files SQLite may have left beside one (a
    /// history store is built under such a name before it is linked into place).
    static func removeStale(in folder: String, prefix: String) -> [String] { removeStale(in: folder, prefixes: [prefix]) }

    /// The same for several prefixes, the folder read once.
    static func removeStale(in folder: String, prefixes: [String]) -> [String] {
        var removed: [String] = []
        for name in Destination.names(in: folder, withPrefix: "") {
            // The longest prefix that fits (one destination's prefix may begin another's).
            guard let prefix = prefixes.filter({ name.hasPrefix($0) }).max(by: { $0.count < $1.count }) else { continue }
            let parts = name.dropFirst(prefix.count).split(separator: "-", omittingEmptySubsequences: false)
            guard parts.count == 2, let pid = Int32(parts[0]), pid > 0, pid != getpid(), UInt32(parts[1], radix: 16) != nil,
                  Destination.isGone(pid) else { continue }
            let full = Destination.joinPath(folder, name)
            if Destination.removeIfUnlocked(full, companions: ["-wal", "-shm", "-journal"]) != nil {
                removed.append(full)
            }
        }
        return removed.sorted()
    }

    /// Appends `bytes`; on failure the temporary file is removed.
    public func write(_ bytes: UnsafeRawBufferPointer) throws(AtomicFileError) {
        guard !done else { throw .cannotWrite(path: path, reason: "the file was already committed or discarded") }
        if let e = writeFully(descriptor, bytes) {
            discard()
            throw .cannotWrite(path: path, reason: Destination.describe(e))
        }
    }

    /// Releases the lock that marks the temporary as a live writer's, for a temporary that
    /// another locking scheme will use: SQLite's POSIX locks, which an NFS client's
    /// emulated flock conflicts with (SQLite would wait out its busy timeout). A cleaner
    /// then judges the temporary by its pid alone (one of another PID namespace could be
    /// taken for stale).
    public func unlock() {
        if descriptor >= 0 { _ = flock(descriptor, LOCK_UN) }
    }

    /// Gives the file `bytes` of allocated blocks now (`posix_fallocate`; they read as
    /// zeros), so that the space is taken before the file gets its name.
    public func allocate(_ bytes: Int) throws(AtomicFileError) {
        guard !done else { throw .cannotWrite(path: path, reason: "the file was already committed or discarded") }
        let code = posix_fallocate(descriptor, 0, off_t(bytes))
        if code != 0 {
            discard()
            throw .cannotWrite(path: path, reason: "cannot allocate \(bytes) bytes: \(Destination.describe(code))")
        }
    }

    public func write(_ text: String) throws(AtomicFileError) {
        var utf8 = text
        var failure: AtomicFileError?
        utf8.withUTF8 { buffer in
            do throws(AtomicFileError) { try write(UnsafeRawBufferPointer(buffer)) } catch { failure = error }
        }
        if let failure { throw failure }
    }

    /// fsync, close, check the destination again (it may have become something else
    /// while the file was written), rename over it, fsync the folder.
    public func commit() throws(AtomicFileError) {
        guard !done else { throw .cannotWrite(path: path, reason: "the file was already committed or discarded") }
        func fail(_ what: String, _ e: Int32) -> AtomicFileError {
            discard()
            return .cannotWrite(path: path, reason: "\(what): \(Destination.describe(e))")
        }
        if fsync(descriptor) != 0 { throw fail("fsync", errno) }
        // `path` is resolved again: a link re-pointed meanwhile, or a target that
        // became a link or a special file, is not replaced.
        let now: String
        do { now = try Destination.target(of: path) } catch {
            discard()
            throw .destination(error)
        }
        guard now == target else {
            discard()
            throw .cannotWrite(path: path, reason: "it now leads to \(now), not \(target) as when the write started; it was not replaced")
        }
        // Unregistered before the rename: once renamed, the temporary's name is free
        // for others, and a signal must not remove what is then theirs.
        SignalCleanup.unregister(registration)
        registration = nil
        // The lock is held through the rename (closed after it), so no cleaner takes
        // the temporary meanwhile; the data is already on disk (fsync above).
        if rename(temporary, target) != 0 { throw fail("cannot rename \(temporary) to it", errno) }
        done = true
        _ = close(descriptor)
        descriptor = -1
        Destination.syncFolder(of: target)
    }

    /// Like `commit`, but never replaces: the temporary gets the destination's name only
    /// if nothing has it (a hard link, which fails when the name exists; then the
    /// temporary is removed and the result is false: someone else made the file first).
    /// The temporary's own name is removed either way. `unsupported` is true when this
    /// file system has no hard links (the temporary is then removed too).
    public func commitIfAbsent() throws(AtomicFileError) -> (linked: Bool, unsupported: Bool) {
        guard !done else { throw .cannotWrite(path: path, reason: "the file was already committed or discarded") }
        if fsync(descriptor) != 0 {
            let e = errno
            discard()
            throw .cannotWrite(path: path, reason: "fsync: \(Destination.describe(e))")
        }
        // Closed before the link: once the name is the destination's, closing a descriptor
        // of that file would drop every POSIX lock this process holds on it (SQLite's, of
        // another thread that opened the store just linked into place).
        _ = close(descriptor)
        descriptor = -1
        let code = link(temporary, target) == 0 ? 0 : errno
        discard()   // the temporary's name (the data stays under the destination's when linked)
        switch code {
        case 0:
            Destination.syncFolder(of: target)
            return (true, false)
        case EEXIST:
            return (false, false)
        case EPERM, EOPNOTSUPP, ENOSYS, EXDEV:
            return (false, true)
        default:
            throw .cannotWrite(path: path, reason: "cannot link \(temporary) to it: \(Destination.describe(code))")
        }
    }

    /// Closes and removes the temporary file, unless committed.
    public func discard() {
        SignalCleanup.unregister(registration)
        registration = nil
        if !done { _ = unlink(temporary) }   // before the close: the lock is held until the name is gone
        if descriptor >= 0 { _ = close(descriptor) }
        descriptor = -1
        done = true
    }
}

/// Writes all of `bytes` to `fd`, retrying short and interrupted writes; returns the
/// errno of a failure, nil on success.
public func writeFully(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> Int32? {
    guard var p = bytes.baseAddress else { return nil }
    var left = bytes.count
    while left > 0 {
        let n = write(fd, p, left)
        if n < 0 {
            if errno == EINTR { continue }
            return errno
        }
        if n == 0 { return EIO }   // no progress: do not spin
        p += n
        left -= n
    }
    return nil
}

/// Why `readFully` stopped.
public enum ReadFullyError: Error, Equatable {
    /// More than `limit` bytes: the input is endless or too large for memory.
    case tooLarge(limit: Int)
    /// read(2) failed with this errno.
    case system(Int32)

    public var reason: String {
        switch self {
        case .tooLarge(let limit): return "it holds more than \(limit / (1 << 20)) MiB (or never ends)"
        case .system(let e): return Destination.describe(e)
        }
    }
}

/// Text from an input file (a header, a line) cut for an error message: at most
/// `limit` Unicode scalars, "…" marking a cut. Scalars, not characters: one letter with
/// a million combining marks is one character. (History's `Validation.quoted` also
/// escapes, for fields that may hold line breaks.)
public func excerpt(_ text: String, limit: Int = 200) -> String {
    let scalars = text.unicodeScalars
    guard let end = scalars.index(scalars.startIndex, offsetBy: limit, limitedBy: scalars.endIndex),
          end != scalars.endIndex else { return text }
    return String(scalars[..<end]) + "…"
}

/// Opens an input for reading, "-" meaning standard input (duplicated, so closing the
/// result leaves the process's standard input open). Close-on-exec either way. Returns
/// the descriptor, or -1 with errno set.
public func openInput(_ path: String) -> Int32 {
    path == "-" ? fcntl(STDIN_FILENO, F_DUPFD_CLOEXEC, 0) : open(path, O_RDONLY | O_CLOEXEC)
}

/// Everything `fd` gives until its end (a pipe, a device, a file), at most `limit`
/// bytes: an endless input such as /dev/zero is an error, not an exhausted memory.
public func readFully(_ fd: Int32, limit: Int) throws(ReadFullyError) -> [UInt8] {
    var data: [UInt8] = []
    // A regular file says its size: too large is refused before reading, and the
    // buffer is allocated once (what is left from the current offset, plus one read).
    var info = stat()
    if fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFREG {
        let here = lseek(fd, 0, SEEK_CUR)
        let left = Int(info.st_size) - Int(max(here, 0))
        if left > limit { throw .tooLarge(limit: limit) }
        data.reserveCapacity(max(left, 0) + (1 << 16))
    }
    var chunk = [UInt8](repeating: 0, count: 1 << 16)   // owned here, reused
    while true {
        let got = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if got < 0 {
            if errno == EINTR { continue }
            throw .system(errno)
        }
        if got == 0 { return data }
        if data.count + got > limit { throw .tooLarge(limit: limit) }
        data.append(contentsOf: chunk[0..<got])
    }
}
