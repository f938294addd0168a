import Foundation
import GGUF
@testable import Llama

/// The repository root, found from this file's path (Tests/LlamaTests/Support.swift).
let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
let fixtureDir = repoRoot.appendingPathComponent("Tests/Fixtures/llama")
let fixtureNames = ["mha_untied", "gqa_tied", "linear_rope"]

/// One transformers reference: token ids and logits per weight type.
struct Reference: Decodable {
    let name: String
    let tokens: [Int32]
    let logits: [String: [[Float]]]

    static func load(_ name: String) throws -> Reference {
        let data = try Data(contentsOf: fixtureDir.appendingPathComponent("\(name).json"))
        return try JSONDecoder().decode(Reference.self, from: data)
    }
}

func modelPath(_ name: String, _ type: String) -> String {
    fixtureDir.appendingPathComponent("\(name)-\(type).gguf").path
}

/// Logits of every position through one prefill (optionally chunked).
func prefillLogits(_ model: LlamaModel, _ tokens: [Int32], maxBatch: Int = 64) throws -> [[Float]] {
    let s = try LlamaSession(model: model, contextLength: tokens.count, maxBatch: maxBatch)
    var rows: [[Float]] = []
    try s.prefill(tokens, logits: .all) { _, l in rows.append(Array(l)) }
    return rows
}

func decodeLogits(_ model: LlamaModel, _ tokens: [Int32]) throws -> [[Float]] {
    let s = try LlamaSession(model: model, contextLength: tokens.count)
    return try tokens.map { t in try s.decode(t) { Array($0) } }
}

/// Largest |a − b| over all elements; rows must have equal shapes.
func maxAbsDiff(_ a: [[Float]], _ b: [[Float]]) -> Float {
    precondition(a.count == b.count, "row counts differ: \(a.count) vs \(b.count)")
    var worst: Float = 0
    for (ra, rb) in zip(a, b) {
        precondition(ra.count == rb.count, "row lengths differ")
        for (x, y) in zip(ra, rb) { worst = max(worst, abs(x - y)) }
    }
    return worst
}

func argmax(_ r: [Float]) -> Int { r.indices.max { r[$0] < r[$1] } ?? -1 }
