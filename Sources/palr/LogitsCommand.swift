import ArgumentParser
import Foundation
import Llama

struct LogitsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "logits",
        abstract: "Run token ids from position 0 and print the logits of every position.")

    @Option(name: .long, help: "A LLaMA GGUF model.")
    var model: String

    @Option(name: .long, help: "Token ids, e.g. 1,2,3.")
    var tokens: String

    @Flag(name: .long, help: "Print {\"logits\": [[...], ...], \"argmax\": [...]} as JSON (a logit that is NaN or infinite is null).")
    var json = false

    @Flag(name: .long, help: "Run one token at a time through decode instead of one prefill.")
    var decode = false

    /// Parsed here so that a bad list prints this command's usage.
    func validate() throws { _ = try parseTokenList(tokens) }

    func run() throws {
        let ids = try parseTokenList(tokens)
        let m = try loadModel(model)
        let session: LlamaSession
        do {
            session = try LlamaSession(model: m, contextLength: min(m.config.contextLength, max(ids.count, 1)))
        } catch { throw CLIError(path: model, error) }
        var rows: [[Float]] = []
        do {
            if decode {
                for t in ids { rows.append(try session.decode(t) { Array($0) }) }
            } else {
                try session.prefill(ids, logits: .all) { _, l in rows.append(Array(l)) }
            }
        } catch { throw CLIError(path: model, "\(error)") }
        let argmax = rows.map { r in r.indices.max { r[$0] < r[$1] } ?? 0 }
        if json {
            var s = "{\"logits\": ["
            // JSON has no NaN or infinity (a damaged model's logits): they are written as null.
            s += rows.map { "[" + $0.map { $0.isFinite ? "\($0)" : "null" }.joined(separator: ", ") + "]" }.joined(separator: ", ")
            s += "], \"argmax\": [" + argmax.map(String.init).joined(separator: ", ") + "]}"
            print(s)
        } else {
            for (i, r) in rows.enumerated() {
                print("position \(i) token \(ids[i]) argmax \(argmax[i]): " + r.map { String(format: "%.6g", $0) }.joined(separator: " "))
            }
        }
    }
}
