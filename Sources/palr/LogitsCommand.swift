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
        // NaN is no maximum: compared as −∞ (a plain `<` makes the answer depend on where
        // the NaNs are). A row of NaNs has argmax 0; the warning below says why.
        let argmax = rows.map { r in
            r.indices.max { (r[$0].isNaN ? -.infinity : r[$0]) < (r[$1].isNaN ? -.infinity : r[$1]) } ?? 0
        }
        let nonFinite = rows.reduce(0) { $0 + $1.filter { !$0.isFinite }.count }
        if nonFinite > 0 {
            printErr("warning: \(nonFinite) logit\(nonFinite == 1 ? " is" : "s are") NaN or infinite: the model's weights are damaged or overflow")
        }
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
