import ArgumentParser
import Foundation
import GGUF
import Llama

struct InfoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "info",
        abstract: "Describe a GGUF file: architecture, shapes, tensor types, metadata, BLAS core.")

    @Option(name: .long, help: "A GGUF file.")
    var model: String

    @Flag(name: .long, help: "List every tensor.")
    var tensors = false

    func run() throws {
        let file: GGUFFile
        do { file = try GGUFFile(path: model) } catch { throw CLIError(path: model, error) }
        print("file: \(model) (\(file.file.size) bytes, GGUF v\(file.version), \(file.tensors.count) tensors, \(file.metadata.count) metadata keys)")
        // Everything from the file is terminal-safe: a key, value or name could carry escape
        // sequences (C0 and C1 controls) or bidirectional overrides.
        if let arch = file["general.architecture"]?.string { print("architecture: \(terminalSafe(arch))") }
        if file["general.architecture"]?.string == "llama", !file.tensors.isEmpty {
            do {
                let m = try LlamaModel(gguf: file)
                let c = m.config
                print("shape: dim \(c.dim), layers \(c.layerCount), heads \(c.headCount) (kv \(c.kvHeadCount), head dim \(c.headDim)), ffn \(c.ffnDim), vocab \(c.vocabSize), context \(c.contextLength)")
                var rope = "rope: base \(c.ropeFreqBase), dims \(c.ropeDim)"
                if case .linear(let f) = c.ropeScaling { rope += ", linear scaling ×\(f)" }
                print(rope + "; rms eps \(c.rmsEpsilon); output \(m.weights.tiedOutput ? "tied to token_embd" : "separate")")
                print("weights read per token: \(m.weightBytesPerToken) bytes")
            } catch {
                throw CLIError(path: model, error)
            }
        }
        var byType: [String: (count: Int, bytes: Int)] = [:]
        for t in file.tensors {
            byType[t.typeInfo.name, default: (0, 0)].count += 1
            byType[t.typeInfo.name, default: (0, 0)].bytes += t.byteCount
        }
        if !byType.isEmpty {
            print("tensor types: " + byType.sorted { $0.key < $1.key }.map { "\($0.key) ×\($0.value.count) (\($0.value.bytes) bytes)" }.joined(separator: ", "))
        }
        print("metadata:")
        for (k, v) in file.metadata { print("  \(terminalSafe(k)) = \(terminalSafe(v.description))") }
        if tensors {
            print("tensors:")
            for t in file.tensors { print("  \(terminalSafe(t.name)) \(t.dims) \(t.typeInfo.name) @\(t.fileOffset) \(t.byteCount) bytes") }
        }
        print("cpu: " + BLAS.featureNames().joined(separator: " "))
        print("blas: " + blasSummary())
    }
}
