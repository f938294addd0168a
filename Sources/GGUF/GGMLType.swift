import CKernels

/// The tensor element types palr reads and writes, in one table: ggml's type id,
/// block size (elements), bytes per block, and conversion to and from float.
///
/// Other ggml types are recognised by id (so `palr info` can name them) but
/// cannot be bound by the model loader.
public enum GGMLType: UInt32, Sendable, CaseIterable, CustomStringConvertible {
    case f32 = 0
    case f16 = 1
    case q4_0 = 2
    case q8_0 = 8
    case bf16 = 30
    /// Plain 32-bit signed integers (catalog neighbour ids). Not a weight type:
    /// converting to float is exact up to 2^24, from float rounds to nearest and clamps.
    case i32 = 26

    public struct Traits: Sendable {
        /// Elements per block (1 for plain float types).
        public let blockSize: Int
        /// Bytes one block occupies on disk.
        public let bytesPerBlock: Int
        public let name: String
    }

    public var traits: Traits {
        switch self {
        case .f32: return Traits(blockSize: 1, bytesPerBlock: 4, name: "F32")
        case .f16: return Traits(blockSize: 1, bytesPerBlock: 2, name: "F16")
        case .bf16: return Traits(blockSize: 1, bytesPerBlock: 2, name: "BF16")
        case .q4_0: return Traits(blockSize: 32, bytesPerBlock: 18, name: "Q4_0")
        case .q8_0: return Traits(blockSize: 32, bytesPerBlock: 34, name: "Q8_0")
        case .i32: return Traits(blockSize: 1, bytesPerBlock: 4, name: "I32")
        }
    }

    public var blockSize: Int { traits.blockSize }
    public var bytesPerBlock: Int { traits.bytesPerBlock }
    public var description: String { traits.name }

    /// Parses "q4_0", "Q4_0", "f16", … (for command-line flags).
    public init?(name: String) {
        guard let t = GGMLType.allCases.first(where: { $0.traits.name.lowercased() == name.lowercased() }) else {
            return nil
        }
        self = t
    }

    /// Bytes that `count` elements occupy; nil when `count` is not a whole number
    /// of blocks or the size overflows.
    public func byteCount(elements count: Int) -> Int? {
        guard count >= 0, count % blockSize == 0 else { return nil }
        let (bytes, overflow) = (count / blockSize).multipliedReportingOverflow(by: bytesPerBlock)
        return overflow ? nil : bytes
    }

    /// Converts one row of `n` elements to float. `src` must hold `byteCount(elements: n)` bytes.
    public func dequantize(_ src: UnsafeRawPointer, into dst: UnsafeMutablePointer<Float>, count n: Int) {
        switch self {
        case .f32: dst.update(from: src.assumingMemoryBound(to: Float.self), count: n)
        case .f16: palr_fp16_to_fp32_row(src.assumingMemoryBound(to: UInt16.self), dst, n)
        case .bf16: palr_bf16_to_fp32_row(src.assumingMemoryBound(to: UInt16.self), dst, n)
        case .q4_0: palr_dequantize_row_q4_0(src, dst, n)
        case .q8_0: palr_dequantize_row_q8_0(src, dst, n)
        case .i32:
            for i in 0..<n { dst[i] = Float(src.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self)) }
        }
    }

    /// Converts `n` floats to this type with ggml's reference rounding.
    /// `dst` must hold `byteCount(elements: n)` bytes.
    public func quantize(_ src: UnsafePointer<Float>, into dst: UnsafeMutableRawPointer, count n: Int) {
        switch self {
        case .f32: dst.copyMemory(from: src, byteCount: n * 4)
        case .f16: palr_fp32_to_fp16_row(src, dst.assumingMemoryBound(to: UInt16.self), n)
        case .bf16: palr_fp32_to_bf16_row(src, dst.assumingMemoryBound(to: UInt16.self), n)
        case .q4_0: palr_quantize_row_q4_0(src, dst, n)
        case .q8_0: palr_quantize_row_q8_0(src, dst, n)
        case .i32:
            for i in 0..<n {
                let v = src[i].isNaN ? 0 : min(max(src[i].rounded(), -2_147_483_648), 2_147_483_520)
                dst.storeBytes(of: Int32(v), toByteOffset: 4 * i, as: Int32.self)
            }
        }
    }

    /// Convenience for tests and tools: whole arrays.
    public func quantize(_ values: [Float]) -> [UInt8]? {
        guard let bytes = byteCount(elements: values.count) else { return nil }
        var out = [UInt8](repeating: 0, count: bytes)
        values.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBytes { dst in
                if let s = src.baseAddress, let d = dst.baseAddress { quantize(s, into: d, count: values.count) }
            }
        }
        return out
    }

    public func dequantize(_ bytes: UnsafeRawBufferPointer, count n: Int) -> [Float]? {
        guard let need = byteCount(elements: n), need <= bytes.count else { return nil }
        var out = [Float](repeating: 0, count: n)
        out.withUnsafeMutableBufferPointer { dst in
            if let s = bytes.baseAddress, let d = dst.baseAddress { dequantize(s, into: d, count: n) }
        }
        return out
    }
}

/// Every ggml type id the reader can size, so a file with types palr cannot
/// compute with (Q4_K, …) still opens for `palr info`. (id: name, block, bytes)
public struct GGMLTypeInfo: Sendable {
    public let id: UInt32
    public let name: String
    public let blockSize: Int
    public let bytesPerBlock: Int

    public static func lookup(_ id: UInt32) -> GGMLTypeInfo? {
        if let t = GGMLType(rawValue: id) {
            return GGMLTypeInfo(id: id, name: t.description, blockSize: t.blockSize, bytesPerBlock: t.bytesPerBlock)
        }
        guard let (name, block, bytes) = others[id] else { return nil }
        return GGMLTypeInfo(id: id, name: name, blockSize: block, bytesPerBlock: bytes)
    }

    private static let others: [UInt32: (String, Int, Int)] = [
        3: ("Q4_1", 32, 20), 6: ("Q5_0", 32, 22), 7: ("Q5_1", 32, 24), 9: ("Q8_1", 32, 36),
        10: ("Q2_K", 256, 84), 11: ("Q3_K", 256, 110), 12: ("Q4_K", 256, 144),
        13: ("Q5_K", 256, 176), 14: ("Q6_K", 256, 210), 15: ("Q8_K", 256, 292),
        24: ("I8", 1, 1), 25: ("I16", 1, 2), 27: ("I64", 1, 8), 28: ("F64", 1, 8),
    ]
}
