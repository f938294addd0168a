// GGUF v3 writer: header and tensor infos first, then tensor data streamed in
// plan order. Output goes to a temporary file beside the destination, which is
// fsynced and renamed over it only by `finish()`; a writer dropped or killed
// before that leaves the destination untouched.
//
// The destination must be a regular file or absent: a rename would replace a
// device, FIFO, socket or directory entry with a regular file (as root, even
// /dev/null), so those are refused before any work. A symbolic link is resolved
// and its target written atomically (the link stays a link); a dangling link is
// refused. Temporaries `OUT.tmp-PID` left by a killed writer (SIGKILL runs no
// cleanup) are removed when the next writer of OUT starts, if PID is not running.

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

    /// Writes the header now; tensor data follows through `write(tensor:)` calls in plan order.
    public init(path: String, metadata: [(String, GGUFValue)], tensors: [GGUFTensorPlan],
                alignment: Int = GGUFFile.defaultAlignment) throws(GGUFError) {
        let target: String
        do { target = try Self.target(of: path) } catch {
            throw .writeFailed(path: path, reason: error.reason)
        }
        guard alignment > 0, alignment & (alignment - 1) == 0 else {
            throw .invalidPlan("alignment \(alignment) is not a power of two")
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
        fd = open(tempPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw .writeFailed(path: tempPath, reason: String(cString: strerror(errno))) }

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
    /// symbolic link `path` points to), so a caller can remove it from a signal handler
    /// (a killed process runs no `deinit`).
    public static func temporaryPath(for path: String) -> String {
        ((try? target(of: path)) ?? path) + temporarySuffix + String(getpid())
    }

    /// Temporaries are `OUT` + this + the writer's process id.
    public static let temporarySuffix = ".tmp-"

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
            let e = String(cString: strerror(errno)); cleanUp()
            throw .writeFailed(path: tempPath, reason: "fsync: \(e)")
        }
        close(fd)
        fd = -1
        guard rename(tempPath, target) == 0 else {
            let e = String(cString: strerror(errno)); cleanUp()
            throw .writeFailed(path: path, reason: "rename: \(e)")
        }
        finished = true
        syncDirectory(of: target)
    }

    private func writeAll(_ bytes: [UInt8]) throws(GGUFError) {
        var failure: GGUFError?
        bytes.withUnsafeBytes { buf in
            do throws(GGUFError) { try writeAll(buf) } catch { failure = error }
        }
        if let failure { throw failure }
    }

    private func writeAll(_ buf: UnsafeRawBufferPointer) throws(GGUFError) {
        guard var p = buf.baseAddress else { return }
        var left = buf.count
        while left > 0 {
            let n = Glibc.write(fd, p, left)
            if n < 0 {
                if errno == EINTR { continue }
                let e = String(cString: strerror(errno))
                cleanUp()
                throw .writeFailed(path: path, reason: e)
            }
            p += n
            left -= n
            written += n
        }
    }

    private func cleanUp() {
        if fd >= 0 { close(fd); fd = -1 }
        unlink(tempPath)
        finished = true
    }

    deinit {
        if !finished { cleanUp() }
    }
}

// MARK: the destination

/// Why a destination cannot be written atomically.
public enum GGUFDestinationError: Error, Equatable, CustomStringConvertible {
    /// `path` (or the file its symbolic link points to) exists and is not a regular
    /// file; `kind` says what it is ("a character device", "a symbolic link to
    /// /dev/null, a character device").
    case notRegularFile(path: String, kind: String)
    /// `path` is a symbolic link whose target does not exist (or cannot be resolved);
    /// `reason` says why ("it points to x.gguf, which does not exist").
    case unresolvableLink(path: String, reason: String)

    public var path: String {
        switch self {
        case .notRegularFile(let p, _), .unresolvableLink(let p, _): return p
        }
    }

    /// What is wrong, as a clause after the path ("cannot write PATH: REASON").
    public var reason: String {
        switch self {
        case .notRegularFile(_, let k):
            return "it is \(k), not a regular file; files are written atomically, by renaming a temporary file over the destination, which would replace it"
        case .unresolvableLink(_, let r):
            return "it is a symbolic link that cannot be followed (\(r)); give the file's own path"
        }
    }

    public var description: String { "\(path): \(reason)" }
}

/// A temporary file of an earlier writer, removed because its process is gone.
public struct GGUFStaleTemporary: Sendable, Equatable {
    public let path: String
    public let pid: Int32
    public let bytes: Int
}

extension GGUFWriter {
    /// The file a write to `path` replaces: `path` itself when it is a regular file or
    /// does not exist; the fully resolved target when `path` is a symbolic link (so the
    /// link stays a link and its target is replaced atomically). Throws when that file
    /// exists and is not a regular file, or when a link cannot be resolved.
    public static func target(of path: String) throws(GGUFDestinationError) -> String {
        var st = stat()
        guard lstat(path, &st) == 0 else { return path }   // absent (or unreadable: open reports it)
        let mode = st.st_mode & S_IFMT
        if mode == S_IFREG { return path }
        guard mode == S_IFLNK else { throw .notRegularFile(path: path, kind: kindName(mode)) }
        guard let resolved = realpath(path, nil) else {
            let e = errno
            let reason = e == ENOENT ? "it points to \(linkText(path) ?? "?"), which does not exist" : String(cString: strerror(e))
            throw .unresolvableLink(path: path, reason: reason)
        }
        let real = String(cString: resolved)
        free(resolved)
        guard stat(real, &st) == 0 else { return real }
        let targetMode = st.st_mode & S_IFMT
        guard targetMode == S_IFREG else {
            throw .notRegularFile(path: path, kind: "a symbolic link to \(real), \(kindName(targetMode))")
        }
        return real
    }

    static func kindName(_ mode: mode_t) -> String {
        switch mode {
        case S_IFDIR: return "a directory"
        case S_IFCHR: return "a character device"
        case S_IFBLK: return "a block device"
        case S_IFIFO: return "a FIFO"
        case S_IFSOCK: return "a socket"
        case S_IFLNK: return "a symbolic link"
        default: return "not a regular file"
        }
    }

    static func linkText(_ path: String) -> String? {
        var buf = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink(path, &buf, buf.count - 1)
        guard n >= 0 else { return nil }
        return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Removes `T.tmp-PID` beside `T` (the target of `path`) for every PID that is not
    /// a running process (kill(PID, 0) fails with ESRCH) and is not this process; only
    /// regular files whose name is exactly that pattern. Returns what was removed.
    @discardableResult
    public static func removeStaleTemporaries(for path: String) -> [GGUFStaleTemporary] {
        let target = (try? Self.target(of: path)) ?? path
        let (dir, base) = splitPath(target)
        let prefix = base + temporarySuffix
        guard let d = opendir(dir) else { return [] }
        defer { closedir(d) }
        var removed: [GGUFStaleTemporary] = []
        while let entry = readdir(d) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            guard name.hasPrefix(prefix) else { continue }
            let digits = name.dropFirst(prefix.count)
            guard !digits.isEmpty, digits.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }), digits.first != "0",
                  let pid = Int32(digits), pid != getpid() else { continue }
            guard kill(pid, 0) != 0 && errno == ESRCH else { continue }   // running (or not ours to signal)
            let full = target.contains("/") ? joinPath(dir, name) : name
            var st = stat()
            guard lstat(full, &st) == 0, st.st_mode & S_IFMT == S_IFREG else { continue }
            if unlink(full) == 0 { removed.append(GGUFStaleTemporary(path: full, pid: pid, bytes: Int(st.st_size))) }
        }
        return removed.sorted { $0.path < $1.path }
    }

    /// (folder, last component) of a path; "." for a bare name.
    static func splitPath(_ path: String) -> (String, String) {
        guard let slash = path.lastIndex(of: "/") else { return (".", path) }
        let dir = slash == path.startIndex ? "/" : String(path[..<slash])
        return (dir, String(path[path.index(after: slash)...]))
    }

    static func joinPath(_ dir: String, _ name: String) -> String { dir.hasSuffix("/") ? dir + name : dir + "/" + name }
}

/// fsync the directory holding `path`, so a rename survives power loss.
func syncDirectory(of path: String) {
    let dfd = open(GGUFWriter.splitPath(path).0, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    if dfd >= 0 { _ = fsync(dfd); close(dfd) }
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
