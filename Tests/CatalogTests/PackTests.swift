import Foundation
import GGUF
import Testing
@testable import Catalog

@Suite struct PackTests {
    @Test func roundTrip() throws {
        let path = Fixtures.temporaryPath("toy.gguf")
        defer { unlink(path) }
        let c = try Fixtures.toyCatalog()
        try CatalogPack.write(c, to: path)
        let r = try CatalogPack.open(path: path)
        #expect(r.info == c.info)
        #expect(r.ids == c.ids)
        #expect(r.titles == c.titles)   // non-ASCII survives
        #expect(r.k == c.k)
        #expect(r.popularityValues == c.popularityValues)
        for i in 0..<c.count {
            #expect(r.neighbours(of: i).map(\.item) == c.neighbours(of: i).map(\.item))
            #expect(r.neighbours(of: i).map(\.score) == c.neighbours(of: i).map(\.score))
        }
        #expect(r.index(of: "c") == 2)
        #expect(r.index(of: "nope") == nil)
        // Retrieval from the mapped pack equals retrieval from memory, with the pack's settings.
        #expect(Retriever(catalog: r).retrieve(history: ["a", "c"]) == Retriever(catalog: c).retrieve(history: ["a", "c"]))
        // The file is a plain GGUF with the documented layout.
        let f = try GGUFFile(path: path)
        #expect(f["general.architecture"]?.string == "palr-catalog")
        #expect(f.tensor(named: "neighbour_ids")?.dims == [3, 5])
        #expect(f.tensor(named: "neighbour_ids")?.type == .i32)
        #expect(f.tensor(named: "neighbour_scores")?.type == .f32)
        #expect(f.tensor(named: "popularity")?.dims == [5])
    }

    // MARK: hostile packs, written with the raw GGUF writer

    struct RawTensor { var name: String; var dims: [Int]; var type: GGMLType; var bytes: [UInt8] }

    static func bytes<T>(_ v: [T]) -> [UInt8] { v.withUnsafeBytes { Array($0) } }

    /// A valid 3-item, K=2 pack's parts, for tests to spoil.
    static func parts() -> (meta: [(String, GGUFValue)], tensors: [RawTensor]) {
        let meta: [(String, GGUFValue)] = [
            ("general.architecture", .string("palr-catalog")),
            ("palr.catalog.id", .string("t")),
            ("palr.catalog.version", .uint32(1)),
            ("palr.catalog.item_count", .uint32(3)),
            ("palr.catalog.item_ids", .array(.string, ["x", "y", "z"].map { .string($0) })),
            ("palr.catalog.item_titles", .array(.string, ["X", "Y", "Z"].map { .string($0) })),
            ("palr.catalog.neighbour_method", .string("seq")),
            ("palr.catalog.k", .uint32(2)),
        ]
        let tensors = [
            RawTensor(name: "popularity", dims: [3], type: .f32, bytes: bytes([Float(1), 2, 3])),
            RawTensor(name: "neighbour_ids", dims: [2, 3], type: .i32, bytes: bytes([Int32(1), 2, 0, -1, -1, -1])),
            RawTensor(name: "neighbour_scores", dims: [2, 3], type: .f32, bytes: bytes([Float(0.5), 0.25, 1, 0, 0, 0])),
        ]
        return (meta, tensors)
    }

    static func write(_ meta: [(String, GGUFValue)], _ tensors: [RawTensor], to path: String) throws {
        let w = try GGUFWriter(path: path, metadata: meta, tensors: tensors.map { GGUFTensorPlan(name: $0.name, dims: $0.dims, type: $0.type) })
        for t in tensors { try w.write(tensor: t.name, bytes: t.bytes) }
        try w.finish()
    }

    static func openSpoiled(_ spoil: (inout [(String, GGUFValue)], inout [RawTensor]) -> Void) throws -> CatalogPackError? {
        var (meta, tensors) = parts()
        spoil(&meta, &tensors)
        let path = Fixtures.temporaryPath("bad.gguf")
        defer { unlink(path) }
        try write(meta, tensors, to: path)
        do {
            _ = try CatalogPack.open(path: path)
            return nil
        } catch {
            return error
        }
    }

    static func setMeta(_ m: inout [(String, GGUFValue)], _ key: String, _ v: GGUFValue?) {
        m.removeAll { $0.0 == key }
        if let v { m.append((key, v)) }
    }

    @Test func validPartsOpen() throws {
        #expect(try Self.openSpoiled { _, _ in } == nil)
    }

    @Test func hostileMetadataIsNamed() throws {
        #expect(try Self.openSpoiled { m, _ in Self.setMeta(&m, "general.architecture", .string("llama")) }
                == .notACatalog(architecture: "llama"))
        #expect(try Self.openSpoiled { m, _ in Self.setMeta(&m, "palr.catalog.item_titles", nil) }
                == .missingKey("palr.catalog.item_titles"))
        #expect(try Self.openSpoiled { m, _ in Self.setMeta(&m, "palr.catalog.k", .string("2")) }
                == .wrongKeyType(key: "palr.catalog.k", expected: "an integer"))
        #expect(try Self.openSpoiled { m, _ in
            Self.setMeta(&m, "palr.catalog.item_titles", .array(.string, [.string("X")]))
        } == .countMismatch(key: "palr.catalog.item_titles", expected: 3, found: 1))
        #expect(try Self.openSpoiled { m, _ in
            Self.setMeta(&m, "palr.catalog.item_ids", .array(.string, ["x", "y", "x"].map { .string($0) }))
        } == .duplicateItemId("x", first: 0, second: 2))
        #expect(try Self.openSpoiled { m, _ in Self.setMeta(&m, "palr.catalog.item_ids", .array(.int32, [.int32(1), .int32(2), .int32(3)])) }
                == .wrongKeyType(key: "palr.catalog.item_ids", expected: "an array of strings"))
        #expect(try Self.openSpoiled { m, _ in Self.setMeta(&m, "palr.catalog.retrieval.recency_decay", .float32(2)) }
                == .badValue(key: "palr.catalog.retrieval.recency_decay", reason: "2.0 is not in (0, 1]"))
    }

    @Test func hostileTensorsAreNamed() throws {
        #expect(try Self.openSpoiled { _, t in t.remove(at: 0) } == .missingTensor("popularity"))
        #expect(try Self.openSpoiled { _, t in t.append(RawTensor(name: "extra", dims: [1], type: .f32, bytes: [0, 0, 0, 0])) }
                == .unexpectedTensor("extra"))
        #expect(try Self.openSpoiled { _, t in t[1].type = .f32 }
                == .wrongTensorType(tensor: "neighbour_ids", expected: "I32", found: "F32"))
        #expect(try Self.openSpoiled { _, t in t[2].dims = [3, 2] }
                == .wrongTensorShape(tensor: "neighbour_scores", expected: [2, 3], found: [3, 2]))
        #expect(try Self.openSpoiled { _, t in t[1].bytes = Self.bytes([Int32(1), 7, 0, -1, -1, -1]) }
                == .badNeighbour(item: 0, slot: 1, reason: "id 7 is outside 0..<3"))
        #expect(try Self.openSpoiled { _, t in t[1].bytes = Self.bytes([Int32(0), -1, 0, -1, -1, -1]) }
                == .badNeighbour(item: 0, slot: 0, reason: "an item cannot be its own neighbour"))
        #expect(try Self.openSpoiled { _, t in t[1].bytes = Self.bytes([Int32(-1), 2, 0, -1, -1, -1]) }
                == .badNeighbour(item: 0, slot: 1, reason: "id 2 after padding (-1)"))
        #expect(try Self.openSpoiled { _, t in t[2].bytes = Self.bytes([Float(0.5), 0.75, 1, 0, 0, 0]) }
                == .badNeighbour(item: 0, slot: 1, reason: "scores are not in descending order"))
        if case .badScore(let name, let i, _)? = try Self.openSpoiled({ _, t in t[2].bytes = Self.bytes([Float.nan, 0.25, 1, 0, 0, 0]) }) {
            #expect(name == "neighbour_scores" && i == 0)
        } else {
            Issue.record("a NaN score must be rejected")
        }
        if case .badScore(let name, let i, _)? = try Self.openSpoiled({ _, t in t[0].bytes = Self.bytes([Float(1), -2, 3]) }) {
            #expect(name == "popularity" && i == 1)
        } else {
            Issue.record("a negative popularity must be rejected")
        }
    }

    @Test func truncatedPacksFailCleanly() throws {
        let path = Fixtures.temporaryPath("whole.gguf")
        let cut = Fixtures.temporaryPath("cut.gguf")
        defer { unlink(path); unlink(cut) }
        let (meta, tensors) = Self.parts()
        try Self.write(meta, tensors, to: path)
        let whole = try Data(contentsOf: URL(fileURLWithPath: path))
        var failures = 0
        for length in stride(from: 0, to: whole.count, by: 3) {
            try whole.prefix(length).write(to: URL(fileURLWithPath: cut))
            do {
                _ = try CatalogPack.open(path: cut)
                Issue.record("a pack cut to \(length) of \(whole.count) bytes opened")
            } catch {
                failures += 1
            }
        }
        #expect(failures == (whole.count + 2) / 3)
        #expect(throws: CatalogPackError.self) { try CatalogPack.open(path: "/nonexistent/pack.gguf") }
    }

    @Test func i32TensorTypeConverts() throws {
        #expect(GGMLType.i32.rawValue == 26 && GGMLType.i32.bytesPerBlock == 4 && GGMLType.i32.blockSize == 1)
        let q = try #require(GGMLType.i32.quantize([1.4, -3.6, 16_777_216, .nan]))
        let back = q.withUnsafeBytes { GGMLType.i32.dequantize($0, count: 4) }
        #expect(back == [1, -4, 16_777_216, 0])
        #expect(GGMLType(name: "i32") == .i32)
    }
}
