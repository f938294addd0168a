// GGUF v3 reader.
//
// File layout (all integers little-endian, no implicit padding):
//
//   u32 magic "GGUF"  u32 version  u64 tensor_count  u64 kv_count
//   kv_count × { string key, u32 value_type, value }
//   tensor_count × { string name, u32 n_dims, u64 dims[n_dims] (fastest first),
//                    u32 ggml_type, u64 offset (relative to the data section) }
//   padding to general.alignment (default 32)
//   data section: each tensor at its offset, offsets multiples of the alignment
//
//   string = u64 length + UTF-8 bytes (no terminator)
//   array  = u32 element_type + u64 count + elements
//
// The whole file is mmapped read-only. Every count, length and offset is checked
// against the bytes that remain before anything is allocated or dereferenced, so a
// truncated or hostile file yields a GGUFError, never a crash.

import FileSafety

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A read-only memory mapping of a whole file, unmapped in `deinit`.
public final class MappedFile: @unchecked Sendable {
    /// Start of the mapping (nil for an empty file). Immutable after init.
    public let base: UnsafeRawPointer?
    public let size: Int
    public let path: String
    /// The SIGBUS handler's record of this mapping (see `MappedFiles`), nil if none.
    private let registration: Int?

    public init(path: String) throws(GGUFError) {
        self.path = path
        // O_NONBLOCK: a plain open of a FIFO for reading waits for a writer, possibly
        // forever; with it the open returns at once and the type check below refuses the
        // FIFO. The flag changes nothing for a regular file's fstat and mmap, and the
        // descriptor is closed once mapped, so it is not cleared.
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw .cannotOpen(path: path, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw .cannotOpen(path: path, reason: String(cString: strerror(errno))) }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw .cannotOpen(path: path, reason: "not a regular file (\(Destination.kindName(st.st_mode)))")
        }
        size = Int(st.st_size)
        if size == 0 {
            base = nil
            registration = nil
            return
        }
        let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let p, p != MAP_FAILED else {
            throw .cannotOpen(path: path, reason: "mmap failed: \(String(cString: strerror(errno)))")
        }
        base = UnsafeRawPointer(p)
        // A file truncated while mapped kills with SIGBUS: the executables' handler then
        // names it (and exits 1) instead of printing a crash report.
        registration = MappedFiles.register(base: UnsafeRawPointer(p), size: size, path: path)
    }

    public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: size) }

    /// Asks the kernel to read ahead (a model about to be used in full).
    public func adviseWillNeed() {
        if let base { _ = madvise(UnsafeMutableRawPointer(mutating: base), size, MADV_WILLNEED) }
    }

    deinit {
        MappedFiles.unregister(registration)
        if let base { munmap(UnsafeMutableRawPointer(mutating: base), size) }
    }
}

/// One tensor's description, validated against the file.
public struct GGUFTensorInfo: Sendable {
    public let name: String
    /// Dimensions fastest-first: `dims[0]` is the row length (reverse of PyTorch).
    public let dims: [Int]
    public let rawType: UInt32
    /// nil when the type is one palr cannot compute with (see `typeInfo` for its name).
    public var type: GGMLType? { GGMLType(rawValue: rawType) }
    public let typeInfo: GGMLTypeInfo
    /// Byte offset of the data from the start of the file.
    public let fileOffset: Int
    public let byteCount: Int

    public var elementCount: Int { dims.reduce(1, *) }
    public var rowLength: Int { dims.first ?? 1 }
    public var rowCount: Int { elementCount / max(rowLength, 1) }
    public var bytesPerRow: Int { rowLength / typeInfo.blockSize * typeInfo.bytesPerBlock }
}

/// A parsed, mmapped GGUF file. Metadata and tensor infos are parsed eagerly;
/// tensor data stays in the mapping and is served as raw buffers.
public final class GGUFFile: @unchecked Sendable {
    public static let magic: UInt32 = 0x4655_4747  // "GGUF" little-endian
    public static let defaultAlignment = 32
    static let maxDims = 4
    static let maxNesting = 8

    public let file: MappedFile
    public let version: UInt32
    /// Metadata in file order.
    public let metadata: [(key: String, value: GGUFValue)]
    public let tensors: [GGUFTensorInfo]
    public let alignment: Int
    /// Byte offset of the data section from the start of the file.
    public let dataOffset: Int
    private let keyIndex: [String: Int]
    private let tensorIndex: [String: Int]

    public var path: String { file.path }

    public convenience init(path: String) throws(GGUFError) {
        try self.init(file: MappedFile(path: path))
    }

    public init(file: MappedFile) throws(GGUFError) {
        self.file = file
        var c = Cursor(bytes: file.bytes)
        let magic = try c.read(UInt32.self, "the magic number")
        guard magic == Self.magic else { throw .badMagic(found: magic) }
        version = try c.read(UInt32.self, "the version")
        guard version == 3 || version == 2 else { throw .unsupportedVersion(version) }
        let tensorCount = try c.read(UInt64.self, "the tensor count")
        let kvCount = try c.read(UInt64.self, "the metadata count")
        // Each entry needs at least 8 (key length) + 4 (type) + 1 bytes; each tensor info at least 8+4+4+8.
        try c.checkCount(kvCount, minimumSize: 13, "the metadata count")

        var meta: [(key: String, value: GGUFValue)] = []
        var keys: [String: Int] = [:]
        meta.reserveCapacity(Int(kvCount))
        for i in 0..<Int(kvCount) {
            let key = try c.readString("the key of metadata entry \(i)")
            let rawType = try c.read(UInt32.self, "the type of metadata key '\(key)'")
            guard let type = GGUFValueType(rawValue: rawType) else { throw .invalidValueType(key: key, type: rawType) }
            let value = try c.readValue(type, key: key, depth: 0)
            guard keys[key] == nil else { throw .duplicateKey(key) }
            keys[key] = meta.count
            meta.append((key, value))
        }
        metadata = meta
        keyIndex = keys

        var align = Self.defaultAlignment
        if let i = keys["general.alignment"] {
            let v = meta[i].value
            guard case .uint32(let a) = v else {
                throw .wrongValueType(key: "general.alignment", expected: "uint32", found: "\(v.type)")
            }
            // The spec asks for a multiple of 8; a smaller one would let a tensor start off
            // its elements' alignment (an F32 row at an odd address).
            guard a >= 8, a & (a - 1) == 0 else { throw .badAlignment(key: "general.alignment", value: String(a)) }
            align = Int(a)
        }
        alignment = align

        try c.checkCount(tensorCount, minimumSize: 24, "the tensor count")
        struct RawTensor { let name: String; let dims: [Int]; let type: GGMLTypeInfo; let offset: UInt64; let bytes: Int }
        var raw: [RawTensor] = []
        var names: [String: Int] = [:]
        for i in 0..<Int(tensorCount) {
            let name = try c.readString("the name of tensor \(i)")
            let nDims = try c.read(UInt32.self, "the dimension count of tensor '\(name)'")
            guard nDims >= 1, nDims <= Self.maxDims else { throw .tooManyDimensions(tensor: name, count: nDims) }
            var dims: [Int] = []
            var elements = 1
            for d in 0..<Int(nDims) {
                let v = try c.read(UInt64.self, "dimension \(d) of tensor '\(name)'")
                guard v >= 1, v <= UInt64(Int32.max) else { throw .badDimension(tensor: name, index: d, value: v) }
                let (e, o) = elements.multipliedReportingOverflow(by: Int(v))
                guard !o else { throw .sizeOverflow(tensor: name) }
                elements = e
                dims.append(Int(v))
            }
            let rawType = try c.read(UInt32.self, "the type of tensor '\(name)'")
            guard let info = GGMLTypeInfo.lookup(rawType) else { throw .unknownTensorType(tensor: name, type: rawType) }
            guard dims[0] % info.blockSize == 0 else {
                throw .rowNotBlockMultiple(tensor: name, rowLength: dims[0], blockSize: info.blockSize, type: info.name)
            }
            let (bytes, o) = (elements / info.blockSize).multipliedReportingOverflow(by: info.bytesPerBlock)
            guard !o else { throw .sizeOverflow(tensor: name) }
            let offset = try c.read(UInt64.self, "the data offset of tensor '\(name)'")
            guard offset % UInt64(align) == 0 else { throw .misalignedTensor(tensor: name, offset: offset, alignment: align) }
            guard names[name] == nil else { throw .duplicateTensor(name) }
            names[name] = raw.count
            raw.append(RawTensor(name: name, dims: dims, type: info, offset: offset, bytes: bytes))
        }

        // The data section starts at the next multiple of the alignment.
        let (padded, o) = c.offset.addingReportingOverflow(align - 1)
        guard !o else { throw .truncated(what: "the data section", offset: c.offset) }
        let dataStart = padded / align * align
        dataOffset = dataStart
        let dataSize = max(0, file.size - dataStart)
        if !raw.isEmpty && dataStart > file.size {
            throw .truncated(what: "the data section", offset: c.offset)
        }

        var infos: [GGUFTensorInfo] = []
        infos.reserveCapacity(raw.count)
        for r in raw {
            guard r.offset <= UInt64(dataSize), UInt64(r.bytes) <= UInt64(dataSize) - r.offset else {
                throw .tensorOutOfBounds(tensor: r.name, start: r.offset, size: r.bytes, dataSize: dataSize)
            }
            infos.append(GGUFTensorInfo(name: r.name, dims: r.dims, rawType: r.type.id, typeInfo: r.type,
                                        fileOffset: dataStart + Int(r.offset), byteCount: r.bytes))
        }
        // No two tensors may share bytes.
        let sorted = infos.sorted { $0.fileOffset < $1.fileOffset }
        for (a, b) in zip(sorted, sorted.dropFirst()) where a.fileOffset + a.byteCount > b.fileOffset {
            throw .overlappingTensors(a.name, b.name)
        }
        tensors = infos
        tensorIndex = names
    }

    // MARK: lookups

    public subscript(key: String) -> GGUFValue? { keyIndex[key].map { metadata[$0].value } }

    public func tensor(named name: String) -> GGUFTensorInfo? { tensorIndex[name].map { tensors[$0] } }

    /// The bytes of one tensor, inside the mapping (valid while this file lives).
    public func data(of tensor: GGUFTensorInfo) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: file.bytes[tensor.fileOffset..<(tensor.fileOffset + tensor.byteCount)])
    }

    /// 16 hex digits that change whenever the file's metadata (settings, tokenizer), its
    /// tensor table or the start or end of any tensor's data changes: identifies a model
    /// in caches that must not outlive it. A retrained or re-converted model of the same
    /// size, or one with a single setting changed, gets a new fingerprint. FNV-1a 64 over
    /// the header and metadata, the file size and 64 bytes at each end of every tensor:
    /// a few KiB read from the mapping, not the weights.
    public var fingerprint: String {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        func mix(_ bytes: UnsafeRawBufferPointer) {
            for b in bytes { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01b3 }
        }
        let all = file.bytes
        mix(UnsafeRawBufferPointer(rebasing: all[0..<min(dataOffset, all.count)]))
        withUnsafeBytes(of: UInt64(file.size).littleEndian) { mix($0) }
        for t in tensors {
            let d = data(of: t)
            mix(UnsafeRawBufferPointer(rebasing: d[0..<min(64, d.count)]))
            mix(UnsafeRawBufferPointer(rebasing: d[max(0, d.count - 64)..<d.count]))
        }
        let hex = String(h, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }

    public func requireString(_ key: String) throws(GGUFError) -> String {
        guard let v = self[key] else { throw .missingKey(key) }
        guard let s = v.string else { throw .wrongValueType(key: key, expected: "string", found: "\(v.type)") }
        return s
    }

    public func requireInt(_ key: String) throws(GGUFError) -> Int {
        guard let v = self[key] else { throw .missingKey(key) }
        guard let i = v.int else {
            // An integer type whose value does not fit (a uint64 above Int64.max) is named as such.
            if case .uint64(let u) = v {
                throw .wrongValueType(key: key, expected: "an integer up to \(Int64.max)", found: "the uint64 \(u)")
            }
            throw .wrongValueType(key: key, expected: "integer", found: "\(v.type)")
        }
        return i
    }

    /// An optional integer key: nil when absent, an error when present with another type.
    public func optionalInt(_ key: String) throws(GGUFError) -> Int? {
        guard let v = self[key] else { return nil }
        guard let i = v.int else {
            // An integer type whose value does not fit (a uint64 above Int64.max) is named as such.
            if case .uint64(let u) = v {
                throw .wrongValueType(key: key, expected: "an integer up to \(Int64.max)", found: "the uint64 \(u)")
            }
            throw .wrongValueType(key: key, expected: "integer", found: "\(v.type)")
        }
        return i
    }

    public func optionalDouble(_ key: String) throws(GGUFError) -> Double? {
        guard let v = self[key] else { return nil }
        guard let d = v.double else { throw .wrongValueType(key: key, expected: "number", found: "\(v.type)") }
        return d
    }

    public func optionalString(_ key: String) throws(GGUFError) -> String? {
        guard let v = self[key] else { return nil }
        guard let s = v.string else { throw .wrongValueType(key: key, expected: "string", found: "\(v.type)") }
        return s
    }

    public func optionalBool(_ key: String) throws(GGUFError) -> Bool? {
        guard let v = self[key] else { return nil }
        guard let b = v.bool else { throw .wrongValueType(key: key, expected: "bool", found: "\(v.type)") }
        return b
    }
}

/// A bounds-checked little-endian reader over the mapping.
struct Cursor {
    let bytes: UnsafeRawBufferPointer
    var offset = 0

    init(bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    var remaining: Int { bytes.count - offset }

    mutating func read<T: FixedWidthInteger>(_: T.Type, _ what: @autoclosure () -> String) throws(GGUFError) -> T {
        let n = MemoryLayout<T>.size
        guard remaining >= n else { throw .truncated(what: what(), offset: offset) }
        let v = bytes.loadUnaligned(fromByteOffset: offset, as: T.self)
        offset += n
        return T(littleEndian: v)
    }

    mutating func readFloat(_ what: @autoclosure () -> String) throws(GGUFError) -> Float {
        Float(bitPattern: try read(UInt32.self, what()))
    }

    mutating func readDouble(_ what: @autoclosure () -> String) throws(GGUFError) -> Double {
        Double(bitPattern: try read(UInt64.self, what()))
    }

    /// Throws unless `count` values of at least `minimumSize` bytes each can fit in what remains.
    func checkCount(_ count: UInt64, minimumSize: Int, _ what: @autoclosure () -> String) throws(GGUFError) {
        guard count <= UInt64(remaining / max(minimumSize, 1)) else { throw .countTooLarge(what: what(), count: count) }
    }

    mutating func readString(_ what: @autoclosure () -> String) throws(GGUFError) -> String {
        let start = offset
        let len = try read(UInt64.self, what())
        guard len <= UInt64(remaining) else { throw .truncated(what: what(), offset: start) }
        let n = Int(len)
        let slice = UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + n)])
        guard let s = String(validating: slice.bindMemory(to: UInt8.self), as: UTF8.self) else {
            throw .invalidUTF8(what: what(), offset: start)
        }
        offset += n
        return s
    }

    mutating func readValue(_ type: GGUFValueType, key: String, depth: Int) throws(GGUFError) -> GGUFValue {
        let what = "the value of metadata key '\(key)'"
        switch type {
        case .uint8: return .uint8(try read(UInt8.self, what))
        case .int8: return .int8(try read(Int8.self, what))
        case .uint16: return .uint16(try read(UInt16.self, what))
        case .int16: return .int16(try read(Int16.self, what))
        case .uint32: return .uint32(try read(UInt32.self, what))
        case .int32: return .int32(try read(Int32.self, what))
        case .uint64: return .uint64(try read(UInt64.self, what))
        case .int64: return .int64(try read(Int64.self, what))
        case .float32: return .float32(try readFloat(what))
        case .float64: return .float64(try readDouble(what))
        case .bool:
            let b = try read(UInt8.self, what)
            return .bool(b != 0)
        case .string: return .string(try readString(what))
        case .array:
            guard depth < GGUFFile.maxNesting else { throw .nestingTooDeep(key: key) }
            let rawElem = try read(UInt32.self, "the element type of array '\(key)'")
            guard let elem = GGUFValueType(rawValue: rawElem) else { throw .invalidValueType(key: key, type: rawElem) }
            let count = try read(UInt64.self, "the length of array '\(key)'")
            try checkCount(count, minimumSize: elem.minimumSize, "the length of array '\(key)'")
            var values: [GGUFValue] = []
            values.reserveCapacity(Int(count))
            for _ in 0..<Int(count) { values.append(try readValue(elem, key: key, depth: depth + 1)) }
            return .array(elem, values)
        }
    }
}
