import Foundation
import Testing
@testable import GGUF

/// A small GGUF with every metadata type, nested arrays and tensors of each type.
func makeSampleFile() throws -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("palr-sample-\(UUID().uuidString).gguf").path
    let meta: [(String, GGUFValue)] = [
        ("general.architecture", .string("test")),
        ("u8", .uint8(200)), ("i8", .int8(-5)), ("u16", .uint16(65000)), ("i16", .int16(-300)),
        ("u32", .uint32(4_000_000_000)), ("i32", .int32(-7)), ("u64", .uint64(1 << 40)), ("i64", .int64(-(1 << 40))),
        ("f32", .float32(1.5)), ("f64", .float64(-2.25)), ("yes", .bool(true)), ("s", .string("héllo ▁ wörld")),
        ("strings", .array(.string, [.string("a"), .string(""), .string("ccc")])),
        ("nested", .array(.array, [.array(.int32, [.int32(1), .int32(2)]), .array(.int32, [])])),
    ]
    let tensors = [
        GGUFTensorPlan(name: "a", dims: [64, 2], type: .q4_0),
        GGUFTensorPlan(name: "b", dims: [32], type: .q8_0),
        GGUFTensorPlan(name: "c", dims: [3, 2], type: .f32),
        GGUFTensorPlan(name: "d", dims: [5], type: .f16),
    ]
    let w = try GGUFWriter(path: path, metadata: meta, tensors: tensors)
    for t in tensors {
        try w.write(tensor: t.name, bytes: (0..<t.byteCount).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) })
    }
    try w.finish()
    return path
}

@Suite struct ReaderTests {
    @Test func roundTripsEveryValueType() throws {
        let path = try makeSampleFile()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let f = try GGUFFile(path: path)
        #expect(f.version == 3)
        #expect(f["u8"] == .uint8(200))
        #expect(f["i64"]?.int == -(1 << 40))
        #expect(f["f64"]?.double == -2.25)
        #expect(f["s"]?.string == "héllo ▁ wörld")
        #expect(f["strings"]?.stringArray == ["a", "", "ccc"])
        #expect(f["nested"] == .array(.array, [.array(.int32, [.int32(1), .int32(2)]), .array(.int32, [])]))
        #expect(f.metadata.map(\.key).first == "general.architecture")
        let a = try #require(f.tensor(named: "a"))
        #expect(a.dims == [64, 2] && a.type == .q4_0 && a.byteCount == 72 && a.rowCount == 2 && a.bytesPerRow == 36)
        #expect(a.fileOffset % 32 == 0)
        let c = try #require(f.tensor(named: "c"))
        #expect(Array(f.data(of: c)) == (0..<24).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) })
    }

    @Test func everyTruncationIsATypedError() throws {
        let path = try makeSampleFile()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let full = try Data(contentsOf: URL(fileURLWithPath: path))
        let cut = path + ".cut"
        defer { try? FileManager.default.removeItem(atPath: cut) }
        var truncatedErrors = 0
        for n in 0..<full.count {
            try full.prefix(n).write(to: URL(fileURLWithPath: cut))
            do {
                _ = try GGUFFile(path: cut)
                Issue.record("a \(n)-byte prefix of a \(full.count)-byte file parsed")
            } catch {
                switch error {
                case .truncated, .tensorOutOfBounds, .countTooLarge: truncatedErrors += 1
                default: Issue.record("prefix \(n): unexpected error \(error)")
                }
            }
        }
        print("truncation: \(truncatedErrors) of \(full.count) prefixes rejected with a truncation error")
        #expect(truncatedErrors == full.count)
    }

    /// Patches bytes of a valid file and checks the exact error.
    func corrupt(_ patch: (inout [UInt8]) -> Void) throws -> GGUFError? {
        let path = try makeSampleFile()
        defer { try? FileManager.default.removeItem(atPath: path) }
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        patch(&bytes)
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        do { _ = try GGUFFile(path: path); return nil } catch { return error }
    }

    func put64(_ b: inout [UInt8], _ at: Int, _ v: UInt64) { for i in 0..<8 { b[at + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(i))) } }
    func put32(_ b: inout [UInt8], _ at: Int, _ v: UInt32) { for i in 0..<4 { b[at + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt32(i))) } }
    func find(_ b: [UInt8], _ s: String) -> Int {
        let n = Array(s.utf8)
        return (0...(b.count - n.count)).first { Array(b[$0..<($0 + n.count)]) == n }!
    }

    @Test func corruptedHeaderFields() throws {
        #expect(try corrupt { $0[0] = 0 } == .badMagic(found: 0x4655_4700))
        #expect(try corrupt { self.put32(&$0, 4, 9) } == .unsupportedVersion(9))
        if case .countTooLarge = try corrupt({ self.put64(&$0, 8, 1 << 60) }) {} else { Issue.record("huge tensor count") }
        if case .countTooLarge = try corrupt({ self.put64(&$0, 16, UInt64.max) }) {} else { Issue.record("huge kv count") }
    }

    @Test func corruptedLengthsAndTypes() throws {
        // The length prefix of the first key ("general.architecture") set huge.
        if case .truncated = try corrupt({ self.put64(&$0, 24, 1 << 62) }) {} else { Issue.record("huge string length") }
        // The value type of the first key set to 99.
        #expect(try corrupt { self.put32(&$0, 24 + 8 + 20, 99) } == .invalidValueType(key: "general.architecture", type: 99))
        // An array count that cannot fit.
        let e = try corrupt { b in let at = self.find(b, "strings") + 7 + 4; self.put64(&b, at, 1 << 50) }
        if case .countTooLarge = e {} else { Issue.record("huge array count: \(String(describing: e))") }
        // A duplicate key: rename "i16" to "u16".
        #expect(try corrupt { b in b[self.find(b, "i16")] = UInt8(ascii: "u") } == .duplicateKey("u16"))
        // A key that is not UTF-8.
        if case .invalidUTF8 = try corrupt({ b in b[self.find(b, "i16")] = 0xC3 }) {} else { Issue.record("bad UTF-8") }
    }

    @Test func corruptedTensorInfos() throws {
        // Tensor "b" (1 dim of 32): set its dimension to 33 → not a block multiple.
        let dimAt: ([UInt8]) -> Int = { b in self.find(b, "\u{1}\0\0\0\0\0\0\0b") + 9 + 4 }
        #expect(try corrupt { b in self.put64(&b, dimAt(b), 33) } == .rowNotBlockMultiple(tensor: "b", rowLength: 33, blockSize: 32, type: "Q8_0"))
        #expect(try corrupt { b in self.put64(&b, dimAt(b), 0) } == .badDimension(tensor: "b", index: 0, value: 0))
        // Its type set to an unknown id, then its offset misaligned, then far past the end.
        #expect(try corrupt { b in self.put32(&b, dimAt(b) + 8, 77) } == .unknownTensorType(tensor: "b", type: 77))
        #expect(try corrupt { b in self.put64(&b, dimAt(b) + 12, 3) } == .misalignedTensor(tensor: "b", offset: 3, alignment: 32))
        if case .tensorOutOfBounds(let t, _, _, _) = try corrupt({ b in self.put64(&b, dimAt(b) + 12, 1 << 40) }) {
            #expect(t == "b")
        } else { Issue.record("offset past the end") }
        // Offset 0 overlaps tensor "a".
        #expect(try corrupt { b in self.put64(&b, dimAt(b) + 12, 0) } == .overlappingTensors("a", "b"))
        // Rename tensor "c" to "b": duplicate.
        #expect(try corrupt { b in let at = self.find(b, "\u{1}\0\0\0\0\0\0\0c"); b[at + 8] = UInt8(ascii: "b") } == .duplicateTensor("b"))
    }

    @Test func fuzzNeverCrashes() throws {
        let path = try makeSampleFile()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let full = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        let out = path + ".fuzz"
        defer { try? FileManager.default.removeItem(atPath: out) }
        var rng = SplitMix(seed: 42)
        var parsed = 0, rejected = 0
        for _ in 0..<1500 {
            var b = full
            for _ in 0..<(1 + Int(rng.next() % 4)) {
                let i = Int(rng.next() % UInt64(b.count))
                b[i] = rng.next() % 3 == 0 ? 0xFF : UInt8(truncatingIfNeeded: rng.next())
            }
            if rng.next() % 5 == 0 { b.removeLast(Int(rng.next() % UInt64(b.count))) }
            try Data(b).write(to: URL(fileURLWithPath: out))
            do {
                let f = try GGUFFile(path: out)
                for t in f.tensors { _ = f.data(of: t).reduce(0, &+) }  // every served byte is readable
                parsed += 1
            } catch {
                rejected += 1
            }
        }
        print("fuzz: 1500 mutated files, \(parsed) parsed, \(rejected) rejected with a GGUFError")
        #expect(parsed + rejected == 1500)
        #expect(rejected > 0)
    }

    @Test func garbageAndEmptyFiles() throws {
        let dir = FileManager.default.temporaryDirectory
        let empty = dir.appendingPathComponent("palr-empty-\(UUID().uuidString)").path
        FileManager.default.createFile(atPath: empty, contents: Data())
        defer { try? FileManager.default.removeItem(atPath: empty) }
        #expect(throws: GGUFError.truncated(what: "the magic number", offset: 0)) { try GGUFFile(path: empty) }
        #expect(throws: GGUFError.self) { try GGUFFile(path: "/nonexistent/palr.gguf") }
        #expect(throws: GGUFError.self) { try GGUFFile(path: dir.path) }
    }

    @Test func writerIsAtomicAndChecksThePlan() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("palr-atomic-\(UUID().uuidString).gguf").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        do {
            let w = try GGUFWriter(path: path, metadata: [], tensors: [GGUFTensorPlan(name: "x", dims: [4], type: .f32)])
            #expect(throws: GGUFError.self) { try w.write(tensor: "y", bytes: [UInt8](repeating: 0, count: 16)) }
            #expect(throws: GGUFError.self) { try w.write(tensor: "x", bytes: [UInt8](repeating: 0, count: 15)) }
            #expect(throws: GGUFError.self) { try w.finish() }
        }
        // The writer was dropped without finishing: nothing is left behind.
        #expect(!FileManager.default.fileExists(atPath: path))
        let dir = (path as NSString).deletingLastPathComponent
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasPrefix((path as NSString).lastPathComponent) }
        #expect(leftovers.isEmpty)
        #expect(throws: GGUFError.self) {
            try GGUFWriter(path: path, metadata: [], tensors: [GGUFTensorPlan(name: "q", dims: [33], type: .q4_0)])
        }
    }
}

/// A tiny deterministic generator for fuzzing.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// The fingerprint that keys cached rankings: the same for the same bytes, different
/// when one setting changes without changing the file's size, or when one weight byte
/// at a tensor's start or end changes.
@Suite struct FingerprintTests {
    func write(prior: Float, weights: (Int) -> UInt8) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("palr-fp-\(UUID().uuidString).gguf").path
        let plan = [GGUFTensorPlan(name: "w", dims: [64, 4], type: .q8_0), GGUFTensorPlan(name: "n", dims: [64], type: .f32)]
        let w = try GGUFWriter(path: path, metadata: [("general.architecture", .string("llama")),
                                                      ("palr.retrieval_prior", .float32(prior))], tensors: plan)
        for t in plan { try w.write(tensor: t.name, bytes: (0..<t.byteCount).map(weights)) }
        try w.finish()
        return path
    }

    @Test func changesWithSettingsAndWeightsOnly() throws {
        let base: (Int) -> UInt8 = { UInt8(truncatingIfNeeded: $0 &* 13) }
        let paths = [try write(prior: 0, weights: base), try write(prior: 0, weights: base),
                     try write(prior: 8, weights: base),
                     try write(prior: 0, weights: { $0 == 2 ? 99 : base($0) }),
                     try write(prior: 0, weights: { $0 == 271 ? 99 : base($0) })]
        defer { for p in paths { try? FileManager.default.removeItem(atPath: p) } }
        let files = try paths.map { try GGUFFile(path: $0) }
        #expect(Set(files.map(\.file.size)).count == 1, "the variants must have the same size")
        let prints = files.map(\.fingerprint)
        print("fingerprints: \(prints)")
        #expect(prints.allSatisfy { $0.count == 16 && $0.allSatisfy(\.isHexDigit) })
        #expect(prints[0] == prints[1], "same bytes, same fingerprint")
        #expect(Set(prints[1...]).count == 4, "a setting, a first-block byte or a last-block byte changed: new fingerprint")
    }
}
