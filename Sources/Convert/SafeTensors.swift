// safetensors reader.
//
// File layout (https://github.com/huggingface/safetensors):
//
//   u64 N (little-endian)   header length
//   N bytes                 JSON object: name -> {"dtype", "shape" (slowest first),
//                           "data_offsets": [begin, end]} plus an optional
//                           "__metadata__": {string: string}
//   data section            tensor bytes; offsets are relative to its start
//
// The file is mmapped read-only. The header length, every dtype, shape and
// offset pair is checked against the file before any data is touched, so a
// truncated file is an error naming the first tensor that does not fit.

import CKernels
import GGUF

/// Element types of safetensors. Only the float types can be converted; the
/// others are known so a header that uses them is still read and checked.
public enum SafeTensorDType: String, Sendable {
    case f64 = "F64", f32 = "F32", f16 = "F16", bf16 = "BF16"
    case i64 = "I64", i32 = "I32", i16 = "I16", i8 = "I8", u8 = "U8", bool = "BOOL"
    case u16 = "U16", u32 = "U32", u64 = "U64", f8e4m3 = "F8_E4M3", f8e5m2 = "F8_E5M2"

    public var size: Int {
        switch self {
        case .f64, .i64, .u64: return 8
        case .f32, .i32, .u32: return 4
        case .f16, .bf16, .i16, .u16: return 2
        case .i8, .u8, .bool, .f8e4m3, .f8e5m2: return 1
        }
    }

    /// F32, F16 and BF16: the types a checkpoint's weights may have.
    public var isConvertible: Bool { self == .f32 || self == .f16 || self == .bf16 }
}

/// One tensor of a safetensors file: where its bytes are and how to read them as floats.
public struct SafeTensor: @unchecked Sendable {
    public let name: String
    public let dtype: SafeTensorDType
    /// PyTorch order (slowest first): a Linear weight is [out, in].
    public let shape: [Int]
    public let file: SafeTensorsFile
    /// Absolute byte offset of the first element in the file.
    public let offset: Int
    public let byteCount: Int

    public var elementCount: Int { shape.reduce(1, *) }
    public var path: String { file.path }

    /// Converts `count` elements starting at element `start` to float.
    /// The tensor's dtype must be convertible (checked by the planner).
    public func read(from start: Int, count: Int, into dst: UnsafeMutablePointer<Float>) {
        precondition(start >= 0 && count >= 0 && start + count <= elementCount, "read outside tensor '\(name)'")
        guard count > 0, let base = file.mapped.base else { return }
        let src = base + offset + start * dtype.size
        switch dtype {
        case .f32:
            UnsafeMutableRawPointer(dst).copyMemory(from: src, byteCount: count * 4)
        case .f16, .bf16:
            let convert = dtype == .f16 ? palr_fp16_to_fp32_row : palr_bf16_to_fp32_row
            let scalar = dtype == .f16 ? palr_fp16_to_fp32 : palr_bf16_to_fp32
            if Int(bitPattern: src) % 2 == 0 {
                convert(src.assumingMemoryBound(to: UInt16.self), dst, count)
            } else {
                for i in 0..<count { dst[i] = scalar(src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) }
            }
        default:
            preconditionFailure("tensor '\(name)' has dtype \(dtype.rawValue), which is not a float type")
        }
    }

    /// Drops this tensor's pages from the process's resident set (see `Files.release`).
    public func releasePages() { Files.release(file.mapped, offset..<(offset + byteCount)) }
}

/// A parsed, mmapped safetensors file.
public final class SafeTensorsFile: @unchecked Sendable {
    public let path: String
    let mapped: MappedFile
    /// The `__metadata__` strings, in file order.
    public let metadata: [(String, String)]
    private struct Entry { let name: String; let dtype: SafeTensorDType; let shape: [Int]; let offset: Int; let byteCount: Int }
    private let entries: [Entry]
    private let index: [String: Int]

    /// Tensors in header order.
    public var tensors: [SafeTensor] { entries.map(tensor) }
    public var tensorNames: [String] { entries.map(\.name) }

    public func tensor(named name: String) -> SafeTensor? { index[name].map { tensor(entries[$0]) } }

    private func tensor(_ e: Entry) -> SafeTensor {
        SafeTensor(name: e.name, dtype: e.dtype, shape: e.shape, file: self, offset: e.offset, byteCount: e.byteCount)
    }

    /// Largest header accepted (the reference implementation's limit).
    static let maxHeader = 100 << 20

    public init(path: String) throws(ConvertError) {
        self.path = path
        mapped = try Files.map(path)
        let bytes = mapped.bytes
        func bad(_ reason: String) -> ConvertError { .badSafetensors(path: path, reason: reason) }

        guard bytes.count >= 8 else { throw bad("the file has \(bytes.count) bytes, fewer than the 8-byte header length") }
        let n = bytes.loadUnaligned(as: UInt64.self).littleEndian
        guard n <= UInt64(Self.maxHeader) else { throw bad("header length \(n) is larger than \(Self.maxHeader) bytes") }
        guard n <= UInt64(bytes.count - 8) else {
            throw bad("the file is truncated: the header is \(n) bytes but only \(bytes.count - 8) follow")
        }
        let headerEnd = 8 + Int(n)
        let header: JSON
        do { header = try JSON.parse(UnsafeRawBufferPointer(rebasing: bytes[8..<headerEnd])) } catch {
            throw bad("the header is not valid JSON: \(error)")
        }
        guard let members = header.object else { throw bad("the header is not a JSON object") }

        let dataSize = bytes.count - headerEnd
        var tensors: [Entry] = []
        var metadata: [(String, String)] = []
        var index: [String: Int] = [:]
        for (name, v) in members {
            if name == "__metadata__" {
                guard let o = v.object else { throw bad("__metadata__ is not an object") }
                for (k, s) in o {
                    guard let s = s.string else { throw bad("__metadata__ value of '\(k)' is not a string") }
                    metadata.append((k, s))
                }
                continue
            }
            guard index[name] == nil else { throw bad("tensor '\(name)' appears twice") }
            guard let d = v["dtype"]?.string else { throw bad("tensor '\(name)' has no dtype") }
            guard let dtype = SafeTensorDType(rawValue: d) else { throw bad("tensor '\(name)' has unknown dtype \(d)") }
            guard let dims = v["shape"]?.array else { throw bad("tensor '\(name)' has no shape") }
            var shape: [Int] = []
            var elements = 1
            for dim in dims {
                guard let x = dim.integerLiteral, x >= 0 else { throw bad("tensor '\(name)' has shape entry \(dim.brief)") }
                let (e, o) = elements.multipliedReportingOverflow(by: x)
                guard !o else { throw bad("tensor '\(name)' is too large") }
                shape.append(x)
                elements = e
            }
            guard let offs = v["data_offsets"]?.array, offs.count == 2,
                  let begin = offs[0].integerLiteral, let end = offs[1].integerLiteral, begin >= 0, begin <= end else {
                throw bad("tensor '\(name)' has data_offsets \(v["data_offsets"]?.brief ?? "missing")")
            }
            let (size, o) = elements.multipliedReportingOverflow(by: dtype.size)
            guard !o, size == end - begin else {
                throw bad("tensor '\(name)': \(dtype.rawValue) \(shape) needs \(o ? "too many" : String(size)) bytes, data_offsets span \(end - begin)")
            }
            guard end <= dataSize else {
                throw .truncatedTensor(path: path, tensor: name, end: end, dataSize: dataSize)
            }
            index[name] = tensors.count
            tensors.append(Entry(name: name, dtype: dtype, shape: shape, offset: headerEnd + begin, byteCount: size))
        }
        // No two tensors may share bytes.
        let sorted = tensors.filter { $0.byteCount > 0 }.sorted { $0.offset < $1.offset }
        for (a, b) in zip(sorted, sorted.dropFirst()) where a.offset + a.byteCount > b.offset {
            throw bad("tensors '\(a.name)' and '\(b.name)' overlap")
        }
        self.metadata = metadata
        self.index = index
        entries = tensors
    }
}
