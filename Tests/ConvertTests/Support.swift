import Foundation
import GGUF
import Llama
@testable import Convert

/// The repository root, found from this file's path (Tests/ConvertTests/Support.swift).
let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
let fixtures = repoRoot.appendingPathComponent("Tests/Fixtures/convert")
/// ../shared, beside the repository (read at run time, never copied).
let shared = repoRoot.deletingLastPathComponent().appendingPathComponent("shared")
let storiesDir = shared.appendingPathComponent("models/stories260K-hf").path

func fixture(_ name: String) -> String { fixtures.appendingPathComponent(name).path }

/// transformers / PEFT references written by tools/fixtures/make_convert_fixtures.py.
struct FixtureReference: Decodable {
    struct Case: Decodable {
        let checkpoint: String
        let adapters: [String]
        let tokens: [Int32]
        let logits: [[Float]]
    }
    let cases: [String: Case]

    static let shared: FixtureReference = {
        let data = try! Data(contentsOf: fixtures.appendingPathComponent("reference.json"))
        return try! JSONDecoder().decode(FixtureReference.self, from: data)
    }()
}

/// A fresh empty folder under the system temp dir, removed by `cleanUp()`.
struct TempDir {
    let path: String
    init() throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("palr-convert-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    func file(_ name: String) -> String { path + "/" + name }
    var contents: [String] { (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? [] }
    func cleanUp() { try? FileManager.default.removeItem(atPath: path) }

    /// Copies a fixture folder (or some of its files) into this folder.
    func copy(from dir: String, except: Set<String> = []) throws {
        for f in try FileManager.default.contentsOfDirectory(atPath: dir) where !except.contains(f) {
            try FileManager.default.copyItem(atPath: dir + "/" + f, toPath: file(f))
        }
    }
}

/// Plans and runs a conversion; returns the output path.
@discardableResult
func convert(_ dir: String, to out: String, type: GGMLType = .f32, lora: [String] = [],
             configure: (inout ConvertOptions) -> Void = { _ in }) throws -> String {
    var o = ConvertOptions()
    o.type = type
    o.loraDirectories = lora
    configure(&o)
    let plan = try ConversionPlan(directory: dir, options: o)
    try Converter.run(plan, to: out)
    return out
}

func prefillLogits(_ model: LlamaModel, _ tokens: [Int32]) throws -> [[Float]] {
    let s = try LlamaSession(model: model, contextLength: tokens.count)
    var rows: [[Float]] = []
    try s.prefill(tokens, logits: .all) { _, l in rows.append(Array(l)) }
    return rows
}

/// Greedy ids from BOS (`n` tokens after it), through the decode path.
func greedy(_ model: LlamaModel, n: Int, bos: Int32 = 1) throws -> [Int32] {
    let s = try LlamaSession(model: model, contextLength: n + 1)
    var ids: [Int32] = []
    var next = try s.decode(bos) { Sampler.argmax($0) }
    for i in 0..<n {
        ids.append(next)
        if i + 1 < n { next = try s.decode(next) { Sampler.argmax($0) } }
    }
    return ids
}

func maxAbsDiff(_ a: [[Float]], _ b: [[Float]]) -> Float {
    precondition(a.count == b.count && zip(a, b).allSatisfy { $0.count == $1.count }, "shapes differ")
    var worst: Float = 0
    for (ra, rb) in zip(a, b) { for (x, y) in zip(ra, rb) { worst = max(worst, abs(x - y)) } }
    return worst
}

/// Writes a safetensors file by hand: F32 tensors, header padded to 8 bytes.
func writeSafetensors(_ path: String, _ tensors: [(String, [Int], [Float])], headerOverride: String? = nil) throws {
    var header = "{"
    var offset = 0
    var parts: [String] = []
    for (name, shape, data) in tensors {
        let end = offset + data.count * 4
        parts.append("\"\(name)\":{\"dtype\":\"F32\",\"shape\":\(shape),\"data_offsets\":[\(offset),\(end)]}")
        offset = end
    }
    header += parts.joined(separator: ",") + "}"
    if let h = headerOverride { header = h }
    while header.utf8.count % 8 != 0 { header += " " }
    var bytes = Data()
    withUnsafeBytes(of: UInt64(header.utf8.count).littleEndian) { bytes.append(contentsOf: $0) }
    bytes.append(contentsOf: Array(header.utf8))
    for (_, _, data) in tensors { data.withUnsafeBytes { bytes.append(contentsOf: $0) } }
    try bytes.write(to: URL(fileURLWithPath: path))
}

/// Reads a safetensors file as F32 tensors, lets `edit` change the list, writes it back.
func rewriteSafetensors(_ path: String, _ edit: (inout [(String, [Int], [Float])]) -> Void) throws {
    var tensors: [(String, [Int], [Float])] = []
    do {
        let src = try SafeTensorsFile(path: path)
        for t in src.tensors {
            var v = [Float](repeating: 0, count: t.elementCount)
            v.withUnsafeMutableBufferPointer { t.read(from: 0, count: t.elementCount, into: $0.baseAddress!) }
            tensors.append((t.name, t.shape, v))
        }
    }
    edit(&tensors)
    try writeSafetensors(path, tensors)
}
