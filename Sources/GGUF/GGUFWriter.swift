// GGUF v3 writer: header and tensor infos first, then tensor data streamed in
// plan order. Output goes to a temporary file beside the destination, which is
// fsynced and renamed over it only by `finish()`; a writer dropped or killed
// before that leaves the destination untouched.

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
    public let path: String
    public let alignment: Int
    private let plan: [GGUFTensorPlan]
    /// Where the data goes until `finish()` renames it to `path`.
    public let tempPath: String
    private var fd: Int32
    private var next = 0              // index of the next tensor whose data is expected
    private var written = 0           // bytes written so far
    private var finished = false

    /// Writes the header now; tensor data follows through `write(tensor:)` calls in plan order.
    public init(path: String, metadata: [(String, GGUFValue)], tensors: [GGUFTensorPlan],
                alignment: Int = GGUFFile.defaultAlignment) throws(GGUFError) {
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
        self.alignment = alignment
        self.plan = tensors
        self.tempPath = Self.temporaryPath(for: path)
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

    /// The temporary file a writer of `path` in this process uses, so a caller can
    /// remove it from a signal handler (a killed process runs no `deinit`).
    public static func temporaryPath(for path: String) -> String { path + ".tmp-\(getpid())" }

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
        guard rename(tempPath, path) == 0 else {
            let e = String(cString: strerror(errno)); cleanUp()
            throw .writeFailed(path: path, reason: "rename: \(e)")
        }
        finished = true
        syncDirectory(of: path)
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

/// fsync the directory holding `path`, so a rename survives power loss.
func syncDirectory(of path: String) {
    let dir: String
    if let slash = path.lastIndex(of: "/") {
        dir = slash == path.startIndex ? "/" : String(path[..<slash])
    } else {
        dir = "."
    }
    let dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
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
