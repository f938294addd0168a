// GGUF v3 writer: header and tensor infos first, then tensor data streamed in
// plan order. Output goes to a temporary file beside the destination, which is
// fsynced and renamed over it only by `finish()`; a writer dropped or killed
// before that leaves the destination untouched.
//
// The destination must be a regular file or absent: a rename would replace a
// device, FIFO, socket or directory entry with a regular file (as root, even
// /dev/null), so those are refused before any work. A symbolic link is resolved
// and its target written atomically (the link stays a link); a dangling link is
// refused. The destination is checked again just before the rename, since a
// conversion can run for minutes.
//
// The temporary `OUT.tmp-PID` is opened without following a symbolic link and
// without truncating, then locked (flock, exclusive, non-blocking) and only then
// emptied; the lock is held until the rename or the cleanup. PIDs are not unique
// across PID namespaces (containers sharing a volume), so the lock, not the name,
// says who owns a temporary: a second writer of OUT whose temporary name clashes
// gets an error instead of overwriting the first one's file. Temporaries left by a
// killed writer (SIGKILL runs no cleanup) are removed when the next writer of OUT
// starts, if PID is not running here and nobody holds the file's lock.

import FileSafety

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// What one tensor will be: its name, dimensions (fastest first) and type.
public struct GGUFTensorPlan: Sendable {
    public let name: String
    public let dims: [Int]
    public let type: GGMLType

    public init(name: String, dims: [Int], type: GGMLType) {
        self.name = name
        self.dims = dims
        self.type = type
    }

    public var elementCount: Int { dims.reduce(1, *) }
    public var byteCount: Int { type.byteCount(elements: elementCount) ?? 0 }
}

public final class GGUFWriter {
    /// The destination as given.
    public let path: String
    /// The file actually replaced: `path`, or the file a symbolic link `path` points to.
    public let target: String
    /// Temporaries of `target` left by killed writers, removed when this writer started.
    public let removedStaleTemporaries: [GGUFStaleTemporary]
    public let alignment: Int
    private let plan: [GGUFTensorPlan]
    /// Where the data goes until `finish()` renames it to `target`.
    public let tempPath: String
    private var fd: Int32
    private var next = 0              // index of the next tensor whose data is expected
    private var written = 0           // bytes written so far
    private var finished = false
    /// The temporary's entry in `SignalCleanup` (made once it is locked, so ours).
    private var registration: Int?

    /// Writes the header now; tensor data follows through `write(tensor:)` calls in plan order.
    public init(path: String, metadata: [(String, GGUFValue)], tensors: [GGUFTensorPlan],
                alignment: Int = GGUFFile.defaultAlignment) throws(GGUFError) {
        let target: String
        do { target = try Self.target(of: path) } catch {
            throw .writeFailed(path: path, reason: error.reason)
        }
        guard alignment >= 8, alignment & (alignment - 1) == 0 else {
            throw .invalidPlan("alignment \(alignment) is not a power of two of at least 8 (the GGUF spec asks for a multiple of 8)")
        }
        var seen = Set<String>()
        for t in tensors {
            guard seen.insert(t.name).inserted else { throw .duplicateTensor(t.name) }
            guard !t.dims.isEmpty, t.dims.count <= GGUFFile.maxDims, t.dims.allSatisfy({ $0 >= 1 }) else {
                throw .invalidPlan("tensor '\(t.name)' has dimensions \(t.dims)")
            }
            guard t.dims[0] % t.type.blockSize == 0 else {
                throw .rowNotBlockMultiple(tensor: t.name, rowLength: t.dims[0], blockSize: t.type.blockSize, type: "\(t.type)")
            }
        }
        var keys = Set<String>()
        for (k, _) in metadata { guard keys.insert(k).inserted else { throw .duplicateKey(k) } }
        var meta = metadata
        if alignment != GGUFFile.defaultAlignment && !keys.contains("general.alignment") {
            meta.append(("general.alignment", .uint32(UInt32(alignment))))
        }

        self.path = path
        self.target = target
        self.alignment = alignment
        self.plan = tensors
        self.removedStaleTemporaries = Self.removeStaleTemporaries(for: target)
        self.tempPath = target + Self.temporarySuffix + String(getpid())
        fd = try Self.openLocked(temporary: tempPath, destination: path)
        registration = SignalCleanup.register(tempPath)

        var header = ByteWriter()
        header.u32(GGUFFile.magic)
        header.u32(3)
        header.u64(UInt64(tensors.count))
        header.u64(UInt64(meta.count))
        for (k, v) in meta {
            header.string(k)
            header.u32(v.type.rawValue)
            header.value(v)
        }
        var offset = 0
        for t in tensors {
            header.string(t.name)
            header.u32(UInt32(t.dims.count))
            for d in t.dims { header.u64(UInt64(d)) }
            header.u32(t.type.rawValue)
            header.u64(UInt64(offset))
            offset = Self.alignUp(offset + t.byteCount, alignment)
        }
        header.pad(to: alignment)
        do {
            try writeAll(header.bytes)
        } catch {
            cleanUp()
            throw error
        }
    }

    /// The temporary file a writer of `path` in this process uses (beside the file a
    /// symbolic link `path` points to). The writer registers it with FileSafety's
    /// `SignalCleanup` once it holds its lock.
    public static func temporaryPath(for path: String) -> String {
        ((try? target(of: path)) ?? path) + temporarySuffix + String(getpid())
    }

    /// Temporaries are `OUT` + this + the writer's process id.
    public static let temporarySuffix = ".tmp-"

    /// Opens `temp` for writing (created if absent), holding an exclusive flock on it,
    /// emptied. Never follows a symbolic link at `temp` and never truncates before the
    /// lock is held, so a file another writer is filling (same name: same PID in another
    /// PID namespace) is left alone. On failure nothing is removed: the file, if any, is
    /// not this writer's.
    static func openLocked(temporary temp: String, destination: String) throws(GGUFError) -> Int32 {
        // O_NONBLOCK: a FIFO planted at the name must not block the open (it is refused below).
        let fd = open(temp, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK, 0o644)
        guard fd >= 0 else {
            let e = errno
            var st = stat()
            let kind = lstat(temp, &st) == 0 ? st.st_mode & S_IFMT : S_IFREG
            let reason = kind == S_IFLNK
                ? "it is a symbolic link; the writer's temporary file must be a regular file it creates, so it refuses to follow the link (remove \(temp))"
                : kind != S_IFREG ? "it is \(Destination.kindName(kind)), not a regular file (remove \(temp))" : describe(e)
            throw .writeFailed(path: temp, reason: reason)
        }
        func fail(_ reason: String) -> GGUFError {
            close(fd)
            return .writeFailed(path: temp, reason: reason)
        }
        var st = stat()
        guard fstat(fd, &st) == 0 else { let e = errno; throw fail("fstat: \(describe(e))") }
        guard st.st_mode & S_IFMT == S_IFREG else {
            throw fail("it is \(Destination.kindName(st.st_mode & S_IFMT)), not a regular file (remove \(temp))")
        }
        guard st.st_nlink <= 1 else {
            throw fail("it has \(st.st_nlink) hard links; emptying it would empty the other names too (remove \(temp))")
        }
        var lockError: Int32 = 0
        repeat { lockError = flock(fd, LOCK_EX | LOCK_NB) == 0 ? 0 : errno } while lockError == EINTR
        guard lockError == 0 else {
            close(fd)
            if lockError == EWOULDBLOCK {
                throw .writeFailed(path: destination, reason: "another writer is writing \(destination) (\(temp) is locked)")
            }
            throw .writeFailed(path: temp, reason: "flock: \(describe(lockError))")
        }
        guard ftruncate(fd, 0) == 0 else { let e = errno; throw fail("ftruncate: \(describe(e))") }
        let flags = fcntl(fd, F_GETFL)
        guard flags >= 0, fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) == 0 else { let e = errno; throw fail("fcntl: \(describe(e))") }
        return fd
    }

    static func describe(_ e: Int32) -> String { String(cString: strerror(e)) }

    static func alignUp(_ n: Int, _ a: Int) -> Int { (n + a - 1) / a * a }

    /// The next tensor in plan order, or nil when all data has been written.
    public var nextTensor: GGUFTensorPlan? { next < plan.count ? plan[next] : nil }

    /// Writes the data of the next planned tensor; `bytes` must be exactly its size.
    public func write(tensor name: String, bytes: UnsafeRawBufferPointer) throws(GGUFError) {
        guard !finished, next < plan.count else { throw .invalidPlan("no tensor is expected, got '\(name)'") }
        let t = plan[next]
        guard t.name == name else { throw .invalidPlan("expected data of tensor '\(t.name)', got '\(name)'") }
        guard bytes.count == t.byteCount else {
            throw .invalidPlan("tensor '\(name)' needs \(t.byteCount) bytes, got \(bytes.count)")
        }
        try writeAll(bytes)
        let pad = Self.alignUp(bytes.count, alignment) - bytes.count
        if pad > 0 && next + 1 < plan.count {
            try writeAll([UInt8](repeating: 0, count: pad))
        }
        next += 1
    }

    public func write(tensor name: String, bytes: [UInt8]) throws(GGUFError) {
        var failure: GGUFError?
        bytes.withUnsafeBytes { buf in
            do throws(GGUFError) { try write(tensor: name, bytes: buf) } catch { failure = error }
        }
        if let failure { throw failure }
    }

    /// Makes the file durable and moves it into place. Every planned tensor must be written.
    public func finish() throws(GGUFError) {
        guard !finished else { return }
        guard next == plan.count else {
            throw .invalidPlan("tensor '\(plan[next].name)' and \(plan.count - next - 1) more were never written")
        }
        guard fsync(fd) == 0 else {
            let e = errno; cleanUp()
            throw .writeFailed(path: tempPath, reason: "fsync: \(Self.describe(e))")
        }
        // The destination may have changed while the file was written: the rename must
        // still replace a regular file (or nothing), and the same one.
        let now: String
        do { now = try Self.target(of: target) } catch {
            cleanUp()
            throw .writeFailed(path: error.path, reason: error.reason + " (it changed while the file was being written)")
        }
        guard now == target else {
            cleanUp()
            throw .writeFailed(path: path, reason: "\(target) became a symbolic link to \(now) while the file was being written; it was not replaced")
        }
        // Unregistered before the rename: once renamed, `OUT.tmp-PID` is a free name that
        // a writer with the same PID elsewhere may take, and a signal must not remove it.
        SignalCleanup.unregister(registration)
        registration = nil
        // The lock is held through the rename, so no other writer takes the temporary meanwhile.
        guard rename(tempPath, target) == 0 else {
            let e = errno; cleanUp()
            throw .writeFailed(path: path, reason: "rename: \(Self.describe(e))")
        }
        close(fd)
        fd = -1
        finished = true
        Destination.syncFolder(of: target)
    }

    private func writeAll(_ bytes: [UInt8]) throws(GGUFError) {
        var failure: GGUFError?
        bytes.withUnsafeBytes { buf in
            do throws(GGUFError) { try writeAll(buf) } catch { failure = error }
        }
        if let failure { throw failure }
    }

    private func writeAll(_ buf: UnsafeRawBufferPointer) throws(GGUFError) {
        if let e = writeFully(fd, buf) {
            cleanUp()
            throw .writeFailed(path: path, reason: Self.describe(e))
        }
        written += buf.count
    }

    /// Removes the temporary, then releases its lock (in that order: once unlocked, the
    /// name may belong to another writer).
    private func cleanUp() {
        SignalCleanup.unregister(registration)   // first: see finish()
        registration = nil
        if fd >= 0 {
            unlink(tempPath)
            close(fd)
            fd = -1
        }
        finished = true
    }

    deinit {
        if !finished { cleanUp() }
    }
}

// MARK: the destination

/// Why a destination cannot be written atomically (the rules are FileSafety's).
public typealias GGUFDestinationError = DestinationError

/// A temporary file of an earlier writer, removed because its process is gone.
public struct GGUFStaleTemporary: Sendable, Equatable {
    public let path: String
    public let pid: Int32
    public let bytes: Int
}

extension GGUFWriter {
    /// The file a write to `path` replaces; see `Destination.target(of:)`.
    public static func target(of path: String) throws(DestinationError) -> String {
        try Destination.target(of: path)
    }

    /// Removes `T.tmp-PID` beside `T` (the target of `path`) for every PID that is not
    /// a running process (kill(PID, 0) fails with ESRCH) and is not this process, and
    /// only if nobody holds the file's lock (a writer in another PID namespace may have
    /// the same PID, running or not here); only regular files whose name is exactly that
    /// pattern, never followed through a symbolic link. Returns what was removed.
    @discardableResult
    public static func removeStaleTemporaries(for path: String) -> [GGUFStaleTemporary] {
        let target = (try? Self.target(of: path)) ?? path
        let (dir, base) = Destination.splitPath(target)
        let prefix = base + temporarySuffix
        var removed: [GGUFStaleTemporary] = []
        for name in Destination.names(in: dir, withPrefix: prefix) {
            let digits = name.dropFirst(prefix.count)
            guard !digits.isEmpty, digits.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }), digits.first != "0",
                  let pid = Int32(digits), pid != getpid(), Destination.isGone(pid) else { continue }
            let full = target.contains("/") ? Destination.joinPath(dir, name) : name
            if let bytes = Destination.removeIfUnlocked(full) {
                removed.append(GGUFStaleTemporary(path: full, pid: pid, bytes: bytes))
            }
        }
        return removed.sorted { $0.path < $1.path }
    }

}

/// Little-endian serialisation of header fields and metadata values.
struct ByteWriter {
    var bytes: [UInt8] = []

    mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func string(_ s: String) {
        let utf8 = Array(s.utf8)
        u64(UInt64(utf8.count))
        bytes.append(contentsOf: utf8)
    }
    mutating func pad(to a: Int) {
        let n = GGUFWriter.alignUp(bytes.count, a) - bytes.count
        bytes.append(contentsOf: repeatElement(0, count: n))
    }

    mutating func value(_ v: GGUFValue) {
        switch v {
        case .uint8(let x): bytes.append(x)
        case .int8(let x): bytes.append(UInt8(bitPattern: x))
        case .uint16(let x): withUnsafeBytes(of: x.littleEndian) { bytes.append(contentsOf: $0) }
        case .int16(let x): withUnsafeBytes(of: x.littleEndian) { bytes.append(contentsOf: $0) }
        case .uint32(let x): u32(x)
        case .int32(let x): u32(UInt32(bitPattern: x))
        case .uint64(let x): u64(x)
        case .int64(let x): u64(UInt64(bitPattern: x))
        case .float32(let x): u32(x.bitPattern)
        case .float64(let x): u64(x.bitPattern)
        case .bool(let b): bytes.append(b ? 1 : 0)
        case .string(let s): string(s)
        case .array(let t, let a):
            u32(t.rawValue)
            u64(UInt64(a.count))
            for e in a { value(e) }
        }
    }
}
