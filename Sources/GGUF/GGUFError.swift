import FileSafety

/// Everything that can be wrong with a GGUF file, each naming what and where.
public enum GGUFError: Error, Equatable, CustomStringConvertible {
    case cannotOpen(path: String, reason: String)
    case badMagic(found: UInt32)
    case unsupportedVersion(UInt32)
    /// The file ended while reading `what`, which started at byte `offset`.
    case truncated(what: String, offset: Int)
    case invalidValueType(key: String, type: UInt32)
    case invalidUTF8(what: String, offset: Int)
    case countTooLarge(what: String, count: UInt64)
    case nestingTooDeep(key: String)
    case duplicateKey(String)
    case duplicateTensor(String)
    case badAlignment(key: String, value: String)
    case tooManyDimensions(tensor: String, count: UInt32)
    case badDimension(tensor: String, index: Int, value: UInt64)
    case unknownTensorType(tensor: String, type: UInt32)
    case rowNotBlockMultiple(tensor: String, rowLength: Int, blockSize: Int, type: String)
    case sizeOverflow(tensor: String)
    case misalignedTensor(tensor: String, offset: UInt64, alignment: Int)
    case tensorOutOfBounds(tensor: String, start: UInt64, size: Int, dataSize: Int)
    case overlappingTensors(String, String)
    // Lookups by callers.
    case missingKey(String)
    case wrongValueType(key: String, expected: String, found: String)
    case missingTensor(String)
    // Writing.
    case writeFailed(path: String, reason: String)
    case invalidPlan(String)

    /// One line, whatever the file held (see `oneLine`).
    public var description: String { oneLine(message) }

    private var message: String {
        switch self {
        case .cannotOpen(let p, let r): return "cannot open \(p): \(r)"
        case .badMagic(let m):
            return "not a GGUF file: magic is 0x\(String(m, radix: 16)) (expected 0x46554747, \"GGUF\")"
        case .unsupportedVersion(let v): return "unsupported GGUF version \(v) (palr reads version 2 and 3)"
        case .truncated(let w, let o): return "file is truncated: it ends inside \(w) (which starts at byte \(o))"
        case .invalidValueType(let k, let t): return "metadata key '\(k)' has unknown value type \(t)"
        case .invalidUTF8(let w, let o): return "\(w) at byte \(o) is not valid UTF-8"
        case .countTooLarge(let w, let c): return "\(w) is \(c), more than the file can hold"
        case .nestingTooDeep(let k): return "metadata key '\(k)' nests arrays too deeply"
        case .duplicateKey(let k): return "metadata key '\(k)' appears twice"
        case .duplicateTensor(let t): return "tensor '\(t)' appears twice"
        case .badAlignment(let k, let v): return "\(k) = \(v) is not a power of two of at least 8"
        case .tooManyDimensions(let t, let n): return "tensor '\(t)' has \(n) dimensions (at most 4)"
        case .badDimension(let t, let i, let v): return "tensor '\(t)' dimension \(i) is \(v)"
        case .unknownTensorType(let t, let ty): return "tensor '\(t)' has unknown ggml type \(ty)"
        case .rowNotBlockMultiple(let t, let r, let b, let ty):
            return "tensor '\(t)': row length \(r) is not a multiple of \(ty)'s block size \(b)"
        case .sizeOverflow(let t): return "tensor '\(t)' is too large (size overflows)"
        case .misalignedTensor(let t, let o, let a): return "tensor '\(t)' data offset \(o) is not a multiple of the alignment \(a)"
        case .tensorOutOfBounds(let t, let s, let n, let d):
            return "tensor '\(t)' (\(n) bytes at data offset \(s)) runs past the end of the data section (\(d) bytes)"
        case .overlappingTensors(let a, let b): return "tensors '\(a)' and '\(b)' overlap"
        case .missingKey(let k): return "metadata key '\(k)' is missing"
        case .wrongValueType(let k, let e, let f): return "metadata key '\(k)' should be \(e) but is \(f)"
        case .missingTensor(let t): return "tensor '\(t)' is missing"
        case .writeFailed(let p, let r): return "cannot write \(p): \(r)"
        case .invalidPlan(let r): return "invalid GGUF write plan: \(r)"
        }
    }
}
